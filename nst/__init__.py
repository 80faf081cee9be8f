"""AutoArt neural style transfer library: Gatys, AutoArt MobileNetV2, Johnson and AdaIN.

The package never imports gradio; the app in ``app.py`` only wires widgets to it.
"""

from nst.errors import ImageError, LayerError, NSTError, WeightsError
from nst.progress import CancelToken, Progress
from nst.result import StyleResult

__all__ = [
    "CancelToken",
    "ImageError",
    "LayerError",
    "NSTError",
    "Progress",
    "StyleResult",
    "WeightsError",
]
__version__ = "0.1.0"
