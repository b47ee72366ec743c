"""Entry points for the export stage; the logic lives in `keras_resunet.export`."""
