"""Fine-tuning EMA-VFI on your own footage: `python -m emavfi finetune DATA -o RUN` (see `run.finetune`).

Modules: options (validated settings and their sources), data (training triplets streamed from folders and
videos), augment (the official augmentations), optim (AdamW, warm-up + cosine), checkpoint (run folder,
safetensors checkpoints, exact resume), loop (the training steps, one process or one Ray worker), validate
(held-out drop-frame PSNR/SSIM), ray_train (Ray Train's TorchTrainer), run (the entry point), cli.
Nothing here imports torch at package import: the CLI's `--help` stays fast.
"""
