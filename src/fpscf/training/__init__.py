"""fpscf.training"""
