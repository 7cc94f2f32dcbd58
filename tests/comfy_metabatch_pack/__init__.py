"""Test-only ComfyUI nodes that follow VideoHelperSuite's Meta Batch protocol (VHS is not on PyPI, so the real one
cannot be installed for the tests): a manager object with VHS's attributes, reset when the manager's prompt
inputs say `requeue` 0; a loader that returns the next `frames_per_batch` frames of a clip on each run and sets
`has_closed_inputs` on the last; a saver that writes each run's frames to the output folder. The e2e test queues
one prompt per batch with `requeue` counted up, as VHS's Video Combine does when it queues the workflow again."""
import math
import os

import numpy as np
import torch

import folder_paths


class Manager:
    def __init__(self, frames_per_batch=-1):
        self.frames_per_batch = frames_per_batch
        self.inputs, self.outputs = {}, {}
        self.unique_id = None
        self.has_closed_inputs = False
        self.total_frames = float("inf")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames_per_batch": ("INT", {"default": 10, "min": 1})},
                "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("VHS_BatchManager",)
    FUNCTION = "update"
    CATEGORY = "testing"

    def update(self, frames_per_batch, prompt=None, unique_id=None):
        if prompt[unique_id]["inputs"].get("requeue", 0) == 0:
            self.__init__(frames_per_batch)
            self.unique_id = unique_id
        return (self,)


class LoadClip:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("STRING", {"default": "clip.npy"})},
                "optional": {"meta_batch": ("VHS_BatchManager",)}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "load"
    CATEGORY = "testing"

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return math.nan

    def load(self, clip, meta_batch=None, unique_id=None):
        frames = np.load(os.path.join(folder_paths.get_input_directory(), os.path.basename(clip)), allow_pickle=False)
        if meta_batch is None:
            return (torch.from_numpy(frames),)
        start = meta_batch.inputs.get(unique_id, 0)
        stop = min(start + meta_batch.frames_per_batch, len(frames))
        meta_batch.inputs[unique_id] = stop
        if stop >= len(frames):
            meta_batch.inputs.pop(unique_id)
            meta_batch.has_closed_inputs = True
            meta_batch.total_frames = len(frames)
        return (torch.from_numpy(frames[start:stop]),)


class SaveClip:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "name": ("STRING", {"default": "out"}),
                             "fps": ("FLOAT", {"default": 0.0, "forceInput": True})}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    CATEGORY = "testing"

    def save(self, images, name, fps):
        path = os.path.join(folder_paths.get_output_directory(), os.path.basename(name) + ".npy")
        np.save(path, images.cpu().numpy())
        return {"ui": {"saved": [{"path": path, "frames": int(images.shape[0]), "fps": fps}]}}


NODE_CLASS_MAPPINGS = {"VHS_BatchManager": Manager, "EMAVFITest_LoadClip": LoadClip, "EMAVFITest_SaveClip": SaveClip}
