"""Bytes in and out: base64, sniffing, image decode, video decode and H.264 encode, drawing. Raises its own
error kinds (``media/errors.py``)."""
