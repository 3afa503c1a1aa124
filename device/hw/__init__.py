"""Hardware seams: Camera, Buttons and Display, each with real and simulated backends.

Every hardware library (picamera2, gpiozero, pygame) is imported inside the
backend that needs it, so this package imports on any machine.
"""
