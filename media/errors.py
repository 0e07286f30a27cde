"""The error kinds of ``media/``: what is wrong with a payload, whatever calls it. ``edge/errors.py`` maps
them to HTTP (400 and 413); nothing here knows about HTTP."""


class MediaError(Exception):
    """Base of the media errors."""


class BadMedia(MediaError):
    """Not a decodable image or video (bad base64, unknown bytes, corrupt, too few frames): HTTP 400."""


class MediaTooLarge(MediaError):
    """Over a configured limit (pixels, duration, frames), judged before the expensive step: HTTP 413."""
