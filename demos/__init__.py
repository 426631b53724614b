"""The demos' C and GLSL sources and their catalogue (demos.yaml), shipped as package data."""
