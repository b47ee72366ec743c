"""`python -m experiments.noise_levels`: one denoiser for every noise level, measured.

    python -m experiments.noise_levels --model runs/resunet_noise_map/model.keras
        [--reference resunet-strong-denoise] [--classical-images 10] [--quick]

On CBSD68 and BSDS300 test, with the seeded evaluation noise every table uses:
- the noise-level-map model at sigma 5 ... 75 /255, given the true sigma;
- the sigma-0.1 reference model at the same levels (it knows one level);
- at sigma 0.1: both models on unclipped and on 8-bit inputs (clipped and rounded);
- at 25/255: the noise-map model given sigma off by -30% / +30%, and its own estimate;
- CBM3D and NLM with the known sigma at 15, 25 and 50 /255 on the first `--classical-images`
  CBSD68 images, beside the noise-map model on the same images. Their per-image PSNRs are kept in
  results/noise_levels/classical.json and reused, as CBM3D costs ~15 s an image.
Writes results/noise_levels/{summary.json, README.md, psnr_vs_sigma.png}.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from experiments import common
from keras_resunet import (
    data_sources,
    datasets,
    degradations,
    evaluation,
    provenance,
    results,
)
from keras_resunet.inference import load_denoiser
from keras_resunet.io import write_text_atomically
from keras_resunet.training.run_folder import training_budget

SIGMAS_255 = (5, 10, 15, 25, 35, 50, 75)
VALIDATION = "Photos1k/val"
CLASSICAL_SIGMAS_255 = (15, 25, 50)
# Published CBSD68 PSNR (dB), sigma in /255: CBM3D and FFDNet from Zhang et al., "FFDNet", IEEE
# TIP 2018, Table VI; DRUNet from Zhang et al., "Plug-and-Play Image Restoration with Deep
# Denoiser Prior", IEEE TPAMI 2021, Table 3.
PUBLISHED = {
    "CBM3D": {15: 33.52, 25: 30.71, 50: 27.38, 75: 25.74},
    "FFDNet": {15: 33.87, 25: 31.21, 50: 27.96, 75: 26.24},
    "DRUNet": {15: 34.30, 25: 31.69, 50: 28.51},
}


def _evaluate(denoiser, images, names, sigma, clip_fraction=0.0, given=None, indices=None):
    degradation = degradations.GaussianNoise(sigma=sigma, clip_fraction=clip_fraction)
    return evaluation.evaluate_model(
        denoiser, images, degradation, seed=0, names=names, sigma=given, indices=indices
    )


def _summary(result):
    return {
        "images": result["n_images"],
        "psnr": round(result["psnr"], 3),
        "ssim": round(result["ssim"], 4),
        "seconds_per_megapixel": round(result["seconds_per_megapixel"], 3),
    }


def classical_scores(cache_path, method, sigma_255, images, names, log):
    """Per-image PSNR of a classical method at a known sigma, read from `cache_path` or computed
    (and added to it) for the images it lacks."""
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    key = f"{method}@{sigma_255}"
    stored = cache.setdefault(key, {})
    missing = [i for i, name in enumerate(names) if name not in stored]
    if missing:
        log(f"  {method} at {sigma_255}/255 on {len(missing)} images ...")
        denoiser = load_denoiser(method, degradations.GaussianNoise(sigma=sigma_255 / 255))
        # each image keeps the noise of its place in the test set (its seed is its index)
        result = _evaluate(
            denoiser,
            [images[i] for i in missing],
            [names[i] for i in missing],
            sigma_255 / 255,
            indices=missing,
        )
        for record in result["images"]:
            stored[record["name"]] = round(record["psnr"], 4)
        write_text_atomically(cache_path, json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return [stored[name] for name in names]


def run(args, log=print):
    out = Path(args.out)
    limit = 3 if args.quick else None
    sigmas = CLASSICAL_SIGMAS_255 if args.quick else SIGMAS_255
    test_sets = {
        name: datasets.load_test_set(name, args.data_root, limit=limit)
        for name in ("CBSD68", "BSDS300")
    }
    # held-out photos from other collections: reported beside the test sets, where present
    if (data_sources.resolve_data_root(args.data_root) / VALIDATION).is_dir():
        test_sets[VALIDATION] = datasets.load_test_set(VALIDATION, args.data_root, limit=limit)
    model = load_denoiser(args.model)
    if not model.takes_sigma:
        raise ValueError(f"{args.model} has no noise-level input: not a noise-level-map model")
    reference = load_denoiser(args.reference)
    rows = {"noise_map": {}, "reference": {}}
    for dataset, (images, names) in test_sets.items():
        for sigma_255 in sigmas:
            log(f"{dataset} sigma {sigma_255}/255")
            rows["noise_map"][f"{dataset}@{sigma_255}"] = _summary(
                _evaluate(model, images, names, sigma_255 / 255)
            )
            if dataset == "CBSD68":
                rows["reference"][f"{dataset}@{sigma_255}"] = _summary(
                    _evaluate(reference, images, names, sigma_255 / 255)
                )
    images, names = test_sets["CBSD68"]
    at_01 = {}
    for label, denoiser in (("noise_map", model), ("reference", reference)):
        for dataset in ("CBSD68", "BSDS300"):
            set_images, set_names = test_sets[dataset]
            for inputs, fraction in (("unclipped", 0.0), ("8-bit", 1.0)):
                result = _evaluate(denoiser, set_images, set_names, 0.1, clip_fraction=fraction)
                at_01[f"{label}/{dataset}/{inputs}"] = _summary(result)
    mismatch = {}
    for sigma_255 in CLASSICAL_SIGMAS_255:
        sigma = sigma_255 / 255
        for label, given in (
            ("-30%", 0.7 * sigma),
            ("+30%", 1.3 * sigma),
            ("estimated", "estimate"),
        ):
            result = _evaluate(model, images, names, sigma, given=given)
            entry = _summary(result)
            if given == "estimate":
                entry["sigma_estimated_mean_255"] = round(
                    float(np.mean(result["sigma_given"])) * 255, 2
                )
            mismatch[f"{sigma_255}/{label}"] = entry
    classical = {}
    count = min(args.classical_images, len(names))
    subset_images, subset_names = images[:count], names[:count]
    for sigma_255 in () if args.quick else CLASSICAL_SIGMAS_255:
        ours = _evaluate(model, subset_images, subset_names, sigma_255 / 255)
        classical[f"noise_map@{sigma_255}"] = round(ours["psnr"], 3)
        for method in ("bm3d", "nlm"):
            scores = classical_scores(
                out / "classical.json", method, sigma_255, subset_images, subset_names, log
            )
            classical[f"{method}@{sigma_255}"] = round(float(np.mean(scores)), 3)
    previous = {}
    if args.previous and VALIDATION in test_sets:
        # the model this one would replace, on the photos that choose what ships
        earlier = load_denoiser(args.previous)
        images, names = test_sets[VALIDATION]
        for sigma_255 in sigmas:
            log(f"{args.previous} on {VALIDATION} sigma {sigma_255}/255")
            result = _evaluate(earlier, images, names, sigma_255 / 255)
            previous[f"{VALIDATION}@{sigma_255}"] = _summary(result)
    summary = {
        "model": str(args.model),
        "training": training_record(args.model),
        "previous": {"model": str(args.previous), "known_sigma": previous} if previous else None,
        "reference": str(args.reference),
        "sigmas_255": list(sigmas),
        "known_sigma": rows,
        "sigma_0.1_clipping": at_01,
        "sigma_mismatch_cbsd68": mismatch,
        "classical_cbsd68_first_images": {"images": count, **classical},
        "published_cbsd68": PUBLISHED,
        **provenance.record_fields(),
    }
    write_text_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot(summary, out / "psnr_vs_sigma.png")
    write_text_atomically(out / "README.md", readme(summary))
    log(f"wrote {out}/summary.json, README.md, psnr_vs_sigma.png")
    return summary


def training_record(model):
    """Steps and training seconds behind `model` (a run's model.keras or a shipped name),
    counting the model it was warm-started from; None when unknown."""
    from keras_resunet import pretrained

    path = Path(model)
    if path.name in ("model.keras", "best.keras") and (path.parent / "progress.json").is_file():
        return training_budget(path.parent, best=path.name == "best.keras")
    if model in pretrained.PRETRAINED:
        found = pretrained.locate(model)
        record = found.with_suffix(".json") if found else None
        return json.loads(record.read_text()) if record and record.is_file() else None
    return None


def _recipe(summary):
    training = summary.get("training")
    budget = ""
    if training:
        budget = (
            f"The model has had {training['steps']:,} training steps, "
            f"{training['train_seconds'] / 3600:.1f} h on 2 CPU cores"
        )
        if training.get("init_from"):
            budget += (
                f" ({training['init_steps']:,} steps and "
                f"{training['init_seconds'] / 3600:.1f} h of them as `{training['init_from']}`, "
                "whose weights started it)"
            )
        budget += "."
    speed = ""
    throughput = Path("results/training/throughput_noise_map.json")
    if throughput.is_file():
        rows = json.loads(throughput.read_text())["rows"]
        cells = ", ".join(
            f"{row['backend']} {row['precision']} {row['patches_per_second']:.0f}"
            for row in rows
            if not row.get("jit_compile")
            and (row["backend"] != "torch" or row.get("fast_torch_conv"))
        )
        speed = (
            f" Backend and precision were measured at this patch and batch size on the default "
            f"ResUNet (patches/s: {cells}; "
            "`results/training/throughput_noise_map.json`), and the campaign trains on the "
            "fastest."
        )
    return f"""## Recipe and budget

A campaign, resumable from its checkpoints and, without them, from the shipped model named in
the config's `init_from`. It started from the sigma-0.1 strong ResUNet with a zero-weighted
noise-map channel added to its first convolution, so it began as a model that already denoises
well at sigma 0.1. After 66,000 steps it was grown wider (32 features at full resolution and
half-width residual branches: 1.67 M to 2.37 M parameters), after 168,000 steps again (96 and
192 features at the third and fourth levels: 3.57 M, where the compute per pixel is small);
each time its extra features were read by zero weights at first, so it went on from what it
computed. Training: 96x96 patches (the start model saw 64x64), batch 16, Adam with a cosine decay
(2e-4; 1e-4 after the growths and for the first run on the new photos below; 5e-5 from
279,000 steps on; 3e-5 after a 500-step linear warmup from 316,000 on) and gradient clipping
at 1.0, sigma uniform on [0, 75/255]
per patch, a quarter of the inputs clipped and rounded to 8 bits. The loss was MSE for the first
96,000 steps, then minus each patch's PSNR (capped at 40 dB): MSE weighs a dB gained at sigma 50
about four times as much as one at sigma 15, and the A/B runs below showed the PSNR loss moving
gains from sigma 50 to sigma 15. The training photos were BSDS300 train (200) for the first
263,000 steps; since then BSDS300 train + Photos1k/train (1,234 photos from five collections,
each image drawn equally often), and each run ships its checkpoint with the best mean PSNR on
fixed noisy crops of Photos1k/val at sigma 15 / 25 / 50 (the test sets never choose one).
{budget}{speed}

{_recipe_ab()}{_trials(summary)}"""


def _trials(summary, folder=Path("results/noise_levels")):
    """One paragraph per candidate model tried and not shipped (trial_*.json: this script's
    record of it, with what was changed and why it stays out), against `summary`'s model."""
    paragraphs = []
    for path in sorted(folder.glob("trial_*.json")):
        record = json.loads(path.read_text())
        trial, ours = record["trial"], record["known_sigma"]["noise_map"]
        shipped = summary["known_sigma"]["noise_map"]
        cells = [f"CBSD68@{s}" for s in (15, 25, 50)]
        if not all(cell in shipped and cell in ours for cell in cells):
            continue  # a quick run's record: other levels
        seconds = ours["CBSD68@25"]["seconds_per_megapixel"]
        reference = record["known_sigma"]["reference"]["CBSD68@25"]["seconds_per_megapixel"]
        paragraphs.append(
            f"Tried, not shipped ([{path.name}]({path.name}), `{record['command']}`): "
            f"{trial['change']}; `{trial['training_command']}`. CBSD68 at sigma 15 / 25 / 50: "
            + " / ".join(f"{ours[c]['psnr']:.2f}" for c in cells)
            + " dB ("
            + " / ".join(f"{ours[c]['psnr'] - shipped[c]['psnr']:+.2f}" for c in cells)
            + f" against the model above), {seconds:.2f} s per megapixel against the sigma-0.1 "
            f"ResUNet's {reference:.2f} in the same run ({seconds / reference:.1f}x): "
            f"{trial['not_shipped_because']}.\n"
        )
    return "\n" + "\n".join(paragraphs) if paragraphs else ""


def _change_text(changes):
    """{"pixel_loss": "l1", "model_args": {"bottleneck": 2}} -> 'pixel_loss=l1, bottleneck=2'."""
    items = []
    for key, value in changes.items():
        items += value.items() if isinstance(value, dict) else [(key, value)]
    return ", ".join(f"{key}={value}" for key, value in items) or "none"


def _recipe_ab(folder=Path("results/noise_levels")):
    """One table of every recipe A/B record (recipe_ab*.json): a row per arm, its PSNR change
    against the model the A/B started from at each sigma; then each record's command."""
    paths = sorted(folder.glob("recipe_ab*.json"))
    if not paths:
        return "The recipe's levers have not been compared in A/B runs yet.\n"
    records = [(path, json.loads(path.read_text())) for path in paths]
    sigmas = list(records[0][1]["start_psnr"])
    rows = results.table_header(
        ["A/B", "arm", "change", "parameters", "steps", "train min"]
        + [f"sigma {s}" for s in sigmas],
        left=3,
    )
    for path, record in records:
        for name, arm in record["arms"].items():
            change = _change_text(arm.get("changes", {}))
            parameters = f"{arm['parameters'] / 1e6:.2f} M" if "parameters" in arm else ""
            steps = f"{arm['steps']:,}" if "steps" in arm else ""
            gains = [f"{arm['psnr'][s] - record['start_psnr'][s]:+.3f}" for s in sigmas]
            rows.append(
                f"| [{path.stem}]({path.stem}.md) | {name} | {change} | {parameters} | {steps} "
                f"| {arm['train_seconds'] / 60:.0f} | " + " | ".join(gains) + " |"
            )
    validations = sorted({record["validation"] for _, record in records})
    commands = "\n".join(f"- {path.stem}: `{record['command']}`" for path, record in records)
    return (
        "Recipe A/B runs: short fine-tunes of the shipped noise-map model of their time "
        f"(`{records[-1][1]['start']}`), one change per arm, equal training pixels per arm, "
        f"scored on {'; '.join(validations)} (CBSD68 never chooses the recipe). PSNR change "
        "(dB) against the model each A/B started from:\n\n"
        + "\n".join(rows)
        + "\n\n"
        + commands
        + "\n"
    )


def plot(summary, path):
    """PSNR against sigma: the noise-map model, the sigma-0.1 model, published CBM3D and FFDNet."""
    rows, sigmas = summary["known_sigma"], summary["sigmas_255"]
    series = {
        f"noise-map ResUNet, {dataset}": [
            (s, rows["noise_map"][f"{dataset}@{s}"]["psnr"]) for s in sigmas
        ]
        for dataset in ("CBSD68", "BSDS300", VALIDATION)
        if f"{dataset}@{sigmas[0]}" in rows["noise_map"]
    }
    series["sigma-0.1 ResUNet, CBSD68"] = [
        (s, rows["reference"][f"CBSD68@{s}"]["psnr"]) for s in sigmas
    ]
    for method in ("CBM3D", "FFDNet"):
        series[f"{method} (published), CBSD68"] = sorted(
            (int(s), value) for s, value in summary["published_cbsd68"][method].items()
        )
    results.line_plot(
        path, series, "noise sigma (/255)", "PSNR (dB)", "Gaussian noise, known sigma"
    )


def _previous_text(summary):
    previous = summary.get("previous")
    if not previous:
        return ""
    return (
        f'"previous model": `{previous["model"]}`, the model this one replaces, on the same '
        f"{VALIDATION} inputs.\n\n"
    )


def readme(summary):
    rows = summary["known_sigma"]
    sigmas = summary["sigmas_255"]
    validation = f"{VALIDATION}@{sigmas[0]}" in rows["noise_map"]
    previous = (summary.get("previous") or {}).get("known_sigma", {})
    table = results.table_header(
        ["sigma (/255)", "noise-map ResUNet CBSD68", "BSDS300 test"]
        + ([VALIDATION] if validation else [])
        + ([f"{VALIDATION}, previous model"] if previous else [])
        + ["sigma-0.1 ResUNet CBSD68", "CBM3D (published)", "FFDNet (published)"]
        + ["DRUNet (published)"],
        left=0,
    )
    for s in sigmas:
        published = [PUBLISHED[m].get(s) for m in ("CBM3D", "FFDNet", "DRUNet")]
        extra = f"| {rows['noise_map'][f'{VALIDATION}@{s}']['psnr']:.2f} " if validation else ""
        if previous:
            extra += f"| {previous[f'{VALIDATION}@{s}']['psnr']:.2f} "
        table.append(
            f"| {s} | {rows['noise_map'][f'CBSD68@{s}']['psnr']:.2f} "
            f"| {rows['noise_map'][f'BSDS300@{s}']['psnr']:.2f} {extra}"
            f"| {rows['reference'][f'CBSD68@{s}']['psnr']:.2f} | "
            + " | ".join(f"{p:.2f}" if p else "" for p in published)
            + " |"
        )
    clip = summary["sigma_0.1_clipping"]
    clip_rows = results.table_header(
        ["model", "test set", "unclipped", "8-bit inputs", "change"], left=2
    )
    for label, name in (("noise_map", "noise-map ResUNet"), ("reference", "sigma-0.1 ResUNet")):
        for dataset in ("CBSD68", "BSDS300"):
            a = clip[f"{label}/{dataset}/unclipped"]["psnr"]
            b = clip[f"{label}/{dataset}/8-bit"]["psnr"]
            clip_rows.append(f"| {name} | {dataset} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    mismatch = summary["sigma_mismatch_cbsd68"]
    mismatch_rows = results.table_header(
        ["true sigma (/255)", "given true", "given -30%", "given +30%"]
        + ["estimated (mean estimate)"],
        left=0,
    )
    for s in CLASSICAL_SIGMAS_255:
        estimated = mismatch[f"{s}/estimated"]
        mismatch_rows.append(
            f"| {s} | {rows['noise_map'][f'CBSD68@{s}']['psnr']:.2f} "
            f"| {mismatch[f'{s}/-30%']['psnr']:.2f} | {mismatch[f'{s}/+30%']['psnr']:.2f} "
            f"| {estimated['psnr']:.2f} ({estimated['sigma_estimated_mean_255']:.1f}) |"
        )
    classical = summary["classical_cbsd68_first_images"]
    classical_rows = results.table_header(
        ["sigma (/255)", "noise-map ResUNet", "CBM3D", "NLM"], left=0
    )
    for s in CLASSICAL_SIGMAS_255:
        if f"noise_map@{s}" in classical:
            classical_rows.append(
                f"| {s} | {classical[f'noise_map@{s}']:.2f} | {classical[f'bm3d@{s}']:.2f} "
                f"| {classical[f'nlm@{s}']:.2f} |"
            )
    seconds = rows["noise_map"]["CBSD68@25"]["seconds_per_megapixel"]
    reference_seconds = rows["reference"]["CBSD68@25"]["seconds_per_megapixel"]
    return f"""# Noise levels: one denoiser for every Gaussian noise level

`{summary["model"]}` is a ResUNet with a noise-level-map input (the image plus a constant channel
holding sigma on the [0, 1] scale), trained on sigma drawn from [0, 75/255] per patch, a quarter
of the inputs clipped and rounded to 8 bits
([experiments/configs/resunet_noise_map.yaml](../../experiments/configs/resunet_noise_map.yaml)).
Compared with the sigma-0.1 ResUNet (`{summary["reference"]}`), which knows one level.

Written by `{summary["command"]}` on {summary["machine"]}. Seeded evaluation noise (image i gets
seed (0, i)), not clipped unless said; outputs clipped to [0, 1]; PSNR in dB, mean over images.
Published numbers are copied from their papers (CBSD68, their own noise draws), not measured here.

## PSNR against sigma (known sigma)

{_previous_text(summary)}{chr(10).join(table)}

![PSNR against sigma](psnr_vs_sigma.png)

Restoration time: {seconds:.2f} s per megapixel (sigma-0.1 ResUNet: {reference_seconds:.2f}).

## 8-bit inputs at sigma 0.1 (25.5/255)

Noisy photos are saved clipped to [0, 1] and rounded to 8 bits; the reference protocol is not.

{chr(10).join(clip_rows)}

## Wrong or estimated sigma (CBSD68)

The noise-map model given a sigma 30% too low or too high, and given the per-image wavelet
estimate on the flattest blocks (`keras_resunet.noise_level.estimate_sigma`, what `resunet
denoise` uses for a lossless file without `--sigma`).

{chr(10).join(mismatch_rows)}

{_recipe(summary)}
## Against CBM3D and NLM on the same inputs

The first {classical["images"]} CBSD68 images, known sigma, the same seeded noisy inputs for
every method. CBM3D: the `bm3d` package, profile "np"; NLM: scikit-image (fast mode,
h = 0.8 sigma). Per-image PSNRs of the classical methods: [classical.json](classical.json).

{chr(10).join(classical_rows)}
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/resunet_noise_map/model.keras")
    parser.add_argument("--reference", default="resunet-strong-denoise")
    parser.add_argument(
        "--previous", help="the model this one would replace: also scored on Photos1k/val"
    )
    parser.add_argument("--classical-images", type=int, default=10)
    parser.add_argument("--data-root")
    parser.add_argument("--out", default="results/noise_levels")
    parser.add_argument("--quick", action="store_true", help="3 images, 3 levels, no classical")
    args = parser.parse_args(argv)
    return common.run_timed("noise_levels", run, args)


if __name__ == "__main__":
    sys.exit(main())
