"""Visual clue anonymization (paper sec. 3.2): delegate bank, IPD sampling, VAA and GSA.

The generator's input contract lives in `align` (canonical crop) and `inputs` (Z_a, Z_g); the
delegate bank in `bank`, IPD sampling in `ipd`, VAA/GSA in `delegates`; see docs/visual.md.
Nothing heavy happens at import: the bank loads on first use.
"""

from streamanon.visual.align import (
    GEN_SIZE,
    TEMPLATE68,
    AlignmentError,
    align_matrix,
    transform_points,
    warp_back,
    warp_back_roi,
    warp_to_crop,
)
from streamanon.visual.bank import BankError, DelegateBank, build_bank, default_bank
from streamanon.visual.delegates import DelegateCache, Delegates, choose_delegates, fit_geometry
from streamanon.visual.inputs import (
    GEOMETRY_CHANNELS,
    appearance_input,
    face_mask,
    from_signed_rgb,
    render_geometry,
    to_signed_rgb,
)

__all__ = [
    "GEN_SIZE",
    "GEOMETRY_CHANNELS",
    "TEMPLATE68",
    "AlignmentError",
    "BankError",
    "DelegateBank",
    "DelegateCache",
    "Delegates",
    "build_bank",
    "choose_delegates",
    "default_bank",
    "fit_geometry",
    "align_matrix",
    "appearance_input",
    "face_mask",
    "from_signed_rgb",
    "render_geometry",
    "to_signed_rgb",
    "transform_points",
    "warp_back",
    "warp_back_roi",
    "warp_to_crop",
]
