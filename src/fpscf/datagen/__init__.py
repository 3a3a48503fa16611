"""Reference-data generation: labelled structures from real electronic-structure codes."""
