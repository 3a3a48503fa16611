"""fpscf.electrostatics"""
