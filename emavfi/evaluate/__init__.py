"""`python -m emavfi evaluate`: the official benchmark protocols and drop-frame scoring of any clip.

Modules: metrics (PSNR, ssim_matlab, IE, scikit-image PSNR/SSIM), holdout (score_holdout), engine (the one
way the network is run), results (EvalResult, JSON/CSV/table). Importing this package imports no torch.
"""
