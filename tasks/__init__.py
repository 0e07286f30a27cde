"""One module per task. Each reads the same way: decode → call runner(s) → encode.

``HANDLERS`` is the registry: a task without an entry answers 503 "not available yet".
"""

from tasks import depth, detection, sam3, velocity

HANDLERS = {
    "object-detection": detection,
    "image-segmentation": detection,
    "pose-estimation": detection,
    "sam3-concept-segmentation": sam3,
    "depth-estimation": depth,
    "velocity-estimation": velocity,
}
