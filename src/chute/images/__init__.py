"""Images: codecs (JPEG/PNG decode, resize, encode), ready-made decoders, whole-batch transforms."""
