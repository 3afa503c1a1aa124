"""The device application: controller (pure state machine), main loop and `skinscan run`."""
