"""LivePortrait's networks (KwaiVGI/LivePortrait, MIT licence for code and weights), one module each.

LivePortrait animates a portrait from implicit 3D keypoints: an appearance extractor (F) turns
the 256x256 source crop into a 3D feature volume; a motion extractor (M, a ConvNeXt-V2 backbone)
reads canonical keypoints, head pose, translation, scale and expression from any face crop; a
warping network (W) moves the feature volume from the source keypoints to the driving ones; a
SPADE generator (G) decodes it to a 512x512 image; and small MLPs (S, R) stitch the animated
face back into the source crop and retarget eyes and lips.

The classes are written from the published architecture with the published parameter names, so
the published state dicts load into them by key. `PUBLISHED` holds the published
hyper-parameters; any other config of the same shape (fewer channels or blocks) builds the same
classes at a smaller size. Importing this package stays cheap: the modules that need torch are
imported by whoever builds the networks.

`CHECKPOINTS` names each network's file inside the weights folder, laid out as the published
repository lays them out.
"""

from __future__ import annotations

from typing import Any

CHECKPOINTS = {
    "appearance_feature_extractor": "liveportrait/base_models/appearance_feature_extractor.pth",
    "motion_extractor": "liveportrait/base_models/motion_extractor.pth",
    "warping_module": "liveportrait/base_models/warping_module.pth",
    "spade_generator": "liveportrait/base_models/spade_generator.pth",
    "stitching_retargeting_module": "liveportrait/retargeting_models/stitching_retargeting_module.pth",
}
# The stitching checkpoint holds one state dict per MLP under these names.
RETARGETING_KEYS = {"stitching": "retarget_shoulder", "lip": "retarget_mouth", "eye": "retarget_eye"}

PUBLISHED: dict[str, Any] = {
    "input_size": 256,  # side of the square face crops every network takes
    "appearance_feature_extractor": {
        "image_channel": 3, "block_expansion": 64, "num_down_blocks": 2, "max_features": 512,
        "reshape_channel": 32, "reshape_depth": 16, "num_resblocks": 6,
    },
    "motion_extractor": {"num_kp": 21, "depths": [3, 3, 9, 3], "dims": [96, 192, 384, 768], "num_bins": 66},
    "warping_module": {
        "num_kp": 21, "block_expansion": 64, "max_features": 512, "num_down_blocks": 2, "reshape_channel": 32,
        "estimate_occlusion_map": True,
        "dense_motion_params": {
            "block_expansion": 32, "max_features": 1024, "num_blocks": 5, "reshape_depth": 16, "compress": 4,
        },
    },
    "spade_generator": {
        "upscale": 2, "block_expansion": 64, "max_features": 512, "num_down_blocks": 2, "out_channels": 64,
        "spade_hidden": 128,
    },
    "stitching_retargeting_module": {
        "stitching": {"input_size": 126, "hidden_sizes": [128, 128, 64], "output_size": 65},
        "lip": {"input_size": 65, "hidden_sizes": [128, 128, 64], "output_size": 63},
        "eye": {"input_size": 66, "hidden_sizes": [256, 256, 128, 128, 64], "output_size": 63},
    },
}  # fmt: skip
