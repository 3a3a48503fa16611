"""fpscf.export"""
