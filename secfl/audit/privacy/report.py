"""``audit.md`` and the reconstruction PNGs of ``secfl audit privacy`` (one row per scenario)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from secfl.audit.privacy.audit_figures import epsilon_png, roc_png
from secfl.audit.privacy.image_metrics import RECOGNISABLE_PSNR
from secfl.audit.privacy.malicious_report import malicious_lines
from secfl.audit.privacy.verdict import provenance_lines, verdict_lines
from secfl.runs import atomic_write, environment

__all__ = ["write_privacy_report", "save_reconstruction_png"]

_BRIDGE_COLUMNS = ("scenario", "bridge", "released", "attack", "PSNR", "SSIM", f"PSNR >= {RECOGNISABLE_PSNR:g} dB",
                   "beats label-only", "labels right", "PSNR black / mean / label-only", "SSIM mean / label-only",
                   "MIA AUC of released (loss)", "epsilon per example")

_COLUMNS = ("scenario", "defense", "accuracy", "inverted", "PSNR", "SSIM", "labels", "PSNR black / mean",
            "MIA AUC loss / LiRA", "TPR@1% / 0.1% (best)", "DP bound AUC / TPR@1%")

_EPSILON_COLUMNS = ("scenario", "claimed (released models)", "vs the server", "estimated [limits]",
                    "fresh noise (differences keep)", "catches epsilon >=", "proven lower bound (ceiling)",
                    "one-shot estimate", "negative control")


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) >= 100 else f"{value:.{digits}f}"


def _inversion_cells(inv: dict[str, Any]) -> list[str]:
    if "skipped" in inv:
        return [f"skipped: {inv['skipped']}", "", "", "", ""]
    what = f"{inv['examples']} ex. / {inv['clients']} client{'s' if inv['clients'] > 1 else ''}"
    if inv.get("method", "inverting_gradients") != "inverting_gradients":
        what += f" ({inv['method']})"
    if "note" in inv:
        what += " (released mean, after the server's central noise)"
    return [what, _num(inv["psnr"], 1), _num(inv["ssim"], 2), _num(inv["label_accuracy"], 2),
            f"{_num(inv['psnr_black'], 1)} / {_num(inv['psnr_mean'], 1)}"]


def _mia_cells(mia: dict[str, Any]) -> list[str]:
    if "skipped" in mia:
        return [f"skipped: {mia['skipped']}", "", ""]
    loss, lira = mia["loss_threshold"], mia.get("lira")
    auc = f"{_num(loss['auc'])} / {_num(lira['auc']) if lira else 'n/a'}"
    attacks = [loss] + ([lira] if lira else [])
    tpr1 = max((a["tpr_at_1pct_fpr"] for a in attacks), key=lambda v: -1 if v != v else v)
    tpr01 = max((a["tpr_at_01pct_fpr"] for a in attacks), key=lambda v: -1 if v != v else v)
    bounds = mia.get("bounds")
    bound = f"{_num(bounds['auc'])} / {_num(bounds['tpr_at_1%'])}" if bounds else "none (no DP claim)"
    return [auc, f"{_num(tpr1)} / {_num(tpr01)}", bound]


def _audit_cells(result: dict[str, Any]) -> list[str]:
    audit = result["audit"]
    claimed = result["epsilon_claimed"]
    claim = "none" if claimed is None else _num(claimed, 2)
    if result.get("sample_level_epsilon"):
        claim += " (client-level; the DP-SGD sample-level epsilon is not audited)"
    server = _server_cell(result)
    if "skipped" in audit:
        return [claim, server, f"skipped: {audit['skipped']}", "", "", "", "", ""]
    lower = (f"{_num(audit['epsilon_lower_bound'], 2)} ({_num(audit['audit_ceiling'], 2)}; {audit['correct']}/"
             f"{audit['guesses']} correct, {audit['sampled']}/{audit['canaries']} sampled)")
    if audit.get("failed"):
        lower = f"**FAILED: {lower} > claim**"
    g = audit.get("gaussian", {})
    if "epsilon" in g:
        estimate = f"{_num(g['epsilon'], 2)} [{_num(g['epsilon_low'], 2)}, {_num(g['epsilon_high'], 2)}]"
        estimate = f"**FLAGGED: {estimate} > claim**" if g.get("flagged") else estimate
        power = _num(g["detectable_epsilon"], 2)
    else:
        estimate, power = f"skipped: {g.get('skipped', 'n/a')}", "n/a"
    return [claim, server, estimate, _fresh_cell(audit.get("fresh_noise", {})), power, lower,
            _num(audit.get("epsilon_estimate"), 2), _control_cell(result)]


def _fresh_cell(f: dict[str, Any]) -> str:
    """The share of the reported noise variance that differencing two releases keeps (worst pair; pooled)."""
    if "worst_fraction" not in f:
        return f"skipped: {f['skipped']}" if "skipped" in f else "n/a"
    a, b = f["worst_rounds"]
    cell = f"{_num(f['worst_fraction'], 2)} (rounds {a}, {b}); pooled {_num(f['pooled_fraction'], 2)}"
    return f"**FLAGGED: {cell}: noise shared across rounds**" if f.get("flagged") else cell


def _control_cell(result: dict[str, Any]) -> str:
    control = result.get("negative_control")
    if control is None:
        return "not run (--negative-control)"
    if "skipped" in control:
        return f"skipped: {control['skipped']}"
    g = control.get("gaussian", {})
    caught = "caught" if control.get("flagged") or control.get("failed") else "**NOT caught**"
    return f"{caught} (true {_num(control.get('epsilon_actual'), 2)}, estimated {_num(g.get('epsilon'), 2)})"


def _server_cell(result: dict[str, Any]) -> str:
    """Epsilon against the aggregation server (knows who took part: no amplification by sampling)."""
    if result.get("epsilon_claimed") is None:
        return "none"
    server = result.get("epsilon_server")
    if server is None:
        return "n/a"
    if math.isinf(server):
        return "inf (it sees the un-noised sum)"
    rounds = result.get("epsilon_server_rounds")
    return _num(server, 2) + (f" ({rounds} rounds taken part)" if rounds is not None else "")


def save_reconstruction_png(npz: Path, png: Path, title: str, *, limit: int = 8, paired: bool = False,
                            below: str = "reconstructed") -> None:
    """True images (top row) over their reconstructions (bottom row, labelled ``below``), at most ``limit``
    pairs: matched by least MSE, or in stored order when ``paired`` (the attacker knows which is which)."""
    from matplotlib.figure import Figure  # the Agg canvas: no pyplot state, no display

    from secfl.audit.privacy.image_metrics import match_images

    data = np.load(npz)
    truth, recon = data["truth"], data["reconstruction"]
    rows, cols = (np.arange(len(truth)), np.arange(len(truth))) if paired else match_images(recon, truth)
    order = np.argsort(cols)[:limit]
    count = len(order)
    fig = Figure(figsize=(max(3.6, 1.2 * count + 0.4), 3.1), layout="constrained")
    axes = fig.subplots(2, count, squeeze=False)
    for j, k in enumerate(order):
        for row, image in ((0, truth[cols[k]]), (1, recon[rows[k]])):
            ax = axes[row][j]
            ax.imshow(np.asarray(image)[0], cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][j].set_title(f"y={int(data['true_labels'][cols[k]])}", fontsize=8)
    axes[0][0].set_ylabel("true", fontsize=8)
    axes[1][0].set_ylabel(below, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(png, dpi=100)


def _bridge_lines(results: Sequence[dict[str, Any]], out: Path) -> list[str]:
    """The FedAgg bridge-inversion table and PNGs (rows only for scenarios with a ``bridges`` result)."""
    rows = [r for r in results if "bridges" in r]
    if not rows:
        return []
    lines = ["## FedAgg bridge inversion", "",
             "The edge or cloud decodes every latent code a device uploaded with the public decoder (`denoised`: "
             "latent_dp's noise removed first by the linear MMSE estimate under the public codes' mean and "
             "covariance; the better attack is shown) and compares each result with the device's private example "
             "(no matching: the server knows which code is which). Baselines need no code: the black image, the "
             "public split's mean image, and label-only: the public mean image of the label the device released. "
             "MIA of released: loss threshold on the final cloud model, released examples vs test examples.", "",
             "| " + " | ".join(_BRIDGE_COLUMNS) + " |", "|" + "---|" * len(_BRIDGE_COLUMNS)]
    pictures = []
    for result in rows:
        b = result["bridges"]
        if "nothing_to_invert" in b or "skipped" in b:
            reason = (f"nothing to invert: {b['nothing_to_invert']}" if "nothing_to_invert" in b
                      else f"skipped: {b['skipped']}")
            lines.append(f"| {result['name']} | {b.get('bridge', 'n/a')} | {reason} |"
                         + " |" * (len(_BRIDGE_COLUMNS) - 3))
            continue
        mia = b.get("released_membership", {})
        cells = [result["name"], b["bridge"], f"{b['examples']} ex. / {b['devices']} devices", b["attack"],
                 _num(b["psnr"], 1), _num(b["ssim"], 2), _num(b["recognisable"], 2), _num(b["beats_label_only"], 2),
                 _num(b["label_accuracy"], 2),
                 f"{_num(b['psnr_black'], 1)} / {_num(b['psnr_mean'], 1)} / {_num(b['psnr_label_only'], 1)}",
                 f"{_num(b['ssim_mean'], 2)} / {_num(b['ssim_label_only'], 2)}",
                 _num(mia["auc"]) if "auc" in mia else f"skipped: {mia.get('skipped', 'n/a')}",
                 _num(b.get("epsilon_per_example"), 3) if b["bridge"] == "latent_dp" else "none (no noise)"]
        lines.append("| " + " | ".join(cells) + " |")
        npz = out / result["name"] / "bridges.npz"
        if npz.exists():
            save_reconstruction_png(npz, out / result["name"] / "bridges.png",
                                    f"{result['name']}: {b['bridge']} bridges, {b['attack']}\nPSNR {b['psnr']:.1f} dB "
                                    f"(mean image {b['psnr_mean']:.1f}, label-only {b['psnr_label_only']:.1f})",
                                    limit=16, paired=True, below=f"{b['attack']} bridge")
            pictures += [f"### {result['name']}: bridges", "",
                         f"![{result['name']} bridges]({result['name']}/bridges.png)", ""]
    return [*lines, "", *pictures]


def write_privacy_report(results: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Write ``<out>/audit.md`` (and each scenario's ``inversion.png``, ``roc.png``, ``epsilon.png``, and
    ``bridges.png`` for FedAgg's latent bridges); return its path."""
    out = Path(out)
    lines = ["# Privacy audit", "", *verdict_lines(results), *provenance_lines(results, environment(0)),
             "## Epsilon", "",
             "Claimed: against those who see only the released models (the sample is secret to them: amplified "
             "by sampling). Vs the server: against the aggregation server, which knows who took part (no "
             "amplification; with distributed noise, the noise of the clients that delivered; infinite with central "
             "noise, which the server adds to a sum it saw), for the client that took part in the most rounds. "
             "Estimated: the per-round signal-to-noise of canary clients (a separate run), through the same "
             "accountant, with its limits at the flag's confidence; FLAGGED when the lower limit exceeds the claim. "
             "Fresh noise: the share of the noise variance the pipeline reports that the difference of two releases "
             "keeps, for the worst pair of rounds and pooled over consecutive pairs (1 or more when the noise is "
             "fresh); FLAGGED when significantly less (the two tests share the flag's error budget). Catches "
             "epsilon >=: the smallest "
             "epsilon this audit flags with 95% probability (its power). Proven "
             "lower bound: Steinke-Nasr-Jagielski one-run audit on the same canaries, assumption-free; the ceiling is "
             "the most these canaries could ever prove. One-shot: Andrew et al.'s point estimate from the summed "
             "releases. Negative control: the same canary run with half the noise multiplier under the same claim.",
             "", "| " + " | ".join(_EPSILON_COLUMNS) + " |", "|" + "---|" * len(_EPSILON_COLUMNS)]
    lines += ["| " + " | ".join([r["name"], *_audit_cells(r)]) + " |" for r in results]
    lines += ["", "## Attacks", "",
              "Inversion: Inverting Gradients with iDLG labels (unless the row names DLG or iDLG) on the first "
              "group's decoded mean at the attacked round; PSNR/SSIM over the best-matched pairs, beside the PSNR of a "
              "black image and of the mean test image (no-information baselines). MIA: on the final model, members = "
              "examples of clients that took part, non-members = test examples; TPR is the better of the two attacks "
              "(n/a when too few non-members make that FPR unmeasurable). The DP bound is what the claimed (epsilon, "
              "delta) allows any attack.", "",
              "| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for result in results:
        cells = [result["name"], result["defense"].replace("|", "/"), _num(result["accuracy"])]
        cells += _inversion_cells(result["inversion"]) + _mia_cells(result["membership"])
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for result in results:
        lines += _figure_lines(result, out)
    lines += _bridge_lines(results, out)
    lines += malicious_lines(results, out)
    path = out / "audit.md"
    atomic_write(path, "\n".join(lines).encode())
    return path


def _figure_lines(result: dict[str, Any], out: Path) -> list[str]:
    """The scenario's inversion PNG, canary ROC and epsilon-per-round plot, each drawn when its data exist."""
    name, folder, lines = result["name"], out / result["name"], []
    npz = folder / "inversion.npz"
    if npz.exists():
        inv = result["inversion"]
        save_reconstruction_png(npz, folder / "inversion.png", f"{name}\nPSNR {inv['psnr']:.1f} dB (black "
                                f"{inv['psnr_black']:.1f}, mean image {inv['psnr_mean']:.1f})")
        lines += [f"![{name}: inversion]({name}/inversion.png)", ""]
    audit, control = result["audit"], result.get("negative_control") or {}
    curves = []
    for label, part, folder_name in (("as written", audit, "canary-run"), ("negative control", control, "control-run")):
        stored = folder / folder_name / "canaries.npz"
        if "skipped" not in part and part and stored.exists():
            data = np.load(stored)
            curves.append((label, data["scores"], data["included"]))
    if curves:
        roc_png(folder / "roc.png", curves, claimed=result.get("epsilon_claimed"), delta=float(result["delta"]))
        lines += [f"![{name}: canary ROC]({name}/roc.png)", ""]
    if audit.get("curve"):
        epsilon_png(folder / "epsilon.png", audit["curve"], control=control.get("curve"))
        lines += [f"![{name}: epsilon per round]({name}/epsilon.png)", ""]
    return [f"## {name}", "", *lines] if lines else []
