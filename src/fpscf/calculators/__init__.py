"""fpscf.calculators"""
