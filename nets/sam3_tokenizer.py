"""The CLIP BPE tokenizer SAM 3's text encoder needs, without ultralytics' git-only ``clip`` package.

ultralytics' ``build_sam3_image_model`` does ``import clip`` and then calls
``clip.simple_tokenizer.SimpleTokenizer()``; the text encoder calls the instance as
``tokenizer(list_of_str, context_length=32) -> LongTensor (B, 32)``. ``clip`` is ultralytics' fork of
OpenAI CLIP, installable only from GitHub. ``open-clip-torch`` (on PyPI) ships the same
``bpe_simple_vocab_16e6.txt.gz`` and a ``SimpleTokenizer`` with the same ``__call__`` signature, the same
text cleaning (ftfy, html unescape, whitespace, lower case), the same BPE and the same special-token ids
(49406 start, 49407 end; only their *names* differ), so the ids are identical.

- ``simple_tokenizer_class()``: the real ``clip.simple_tokenizer.SimpleTokenizer`` when importable, else
  open_clip's.
- ``clip_module_for_sam3()``: a context manager for calls into ultralytics' builder. When ``clip`` is not
  importable it puts a two-attribute stand-in (``clip.simple_tokenizer.SimpleTokenizer``) into
  ``sys.modules`` for the duration of the call and removes it afterwards, so no other code (YOLOE's
  ``clip.load``) ever sees a half ``clip``. Nothing in site-packages is touched.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types

CONTEXT_LENGTH = 32  # what SAM 3's VETextEncoder passes


def real_clip_available() -> bool:
    """True when the genuine ``clip`` package (ultralytics' fork or OpenAI's) is importable."""
    module = sys.modules.get("clip")
    if module is not None:
        return not getattr(module, "__perception_shim__", False)
    try:
        importlib.import_module("clip.simple_tokenizer")
    except ImportError:
        return False
    return True


def simple_tokenizer_class() -> type:
    """``clip.simple_tokenizer.SimpleTokenizer`` if the real package is there, else open_clip's twin."""
    if real_clip_available():
        return importlib.import_module("clip.simple_tokenizer").SimpleTokenizer
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer


def make_tokenizer():
    """A tokenizer instance as SAM 3's text encoder uses it: ``tok(texts, context_length=32)``."""
    return simple_tokenizer_class()()


@contextlib.contextmanager
def clip_module_for_sam3():
    """Make ``import clip; clip.simple_tokenizer.SimpleTokenizer`` work inside the block.

    A no-op when the real ``clip`` is importable. Otherwise a minimal stand-in module is injected into
    ``sys.modules`` and removed on exit (only if it is still ours).
    """
    if real_clip_available():
        yield
        return
    shim = types.ModuleType("clip")
    shim.__doc__ = "Stand-in for ultralytics' CLIP fork: only simple_tokenizer.SimpleTokenizer (open_clip's)."
    shim.__perception_shim__ = True
    sub = types.ModuleType("clip.simple_tokenizer")
    sub.SimpleTokenizer = simple_tokenizer_class()
    shim.simple_tokenizer = sub
    sys.modules["clip"] = shim
    sys.modules["clip.simple_tokenizer"] = sub
    try:
        yield
    finally:
        if sys.modules.get("clip") is shim:
            del sys.modules["clip"]
        if sys.modules.get("clip.simple_tokenizer") is sub:
            del sys.modules["clip.simple_tokenizer"]
