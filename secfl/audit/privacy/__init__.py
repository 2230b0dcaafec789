"""Privacy attacks and the epsilon audit (``secfl audit privacy``).

``inversion`` (gradient inversion: DLG, iDLG, Inverting Gradients) with ``image_metrics`` (PSNR, SSIM,
baselines); ``membership`` (loss threshold, offline LiRA, the bounds DP implies); ``canaries`` and
``epsilon`` (the one-run epsilon lower bound and the one-shot estimate); ``bridge_inversion`` (FedAgg's
latent bridge codes decoded back to the devices' private images); ``run`` (runs scenarios and
attacks what their server saw: ``audit_all``, ``audit_scenario``) and ``report`` (``audit.md`` and the PNGs).
"""
