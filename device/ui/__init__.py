"""The device screens: immutable Screen values and the pygame renderer."""
