"""Desktop conversion: Keras -> int8 TFLite, the Grad-CAM gradient submodel, the bundle."""
