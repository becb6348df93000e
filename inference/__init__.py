"""Inference: a model file loaded and run (LiteRT for .tflite, Keras for .keras), images classified, the draw page."""
