"""fpscf.scf"""
