"""How close is each synthetic image to the member of D whose caption is its prompt? Text-to-image against image-to-image.

For each run folder given, over the largest synthetic set: the pixel distance (RMS, ``tckr.audit.pixels``) from
each synthetic image to its prompt's own image of D (:func:`tckr.synthesis.plan_sources`), to its nearest image of D
and to its nearest image of H (the non-members of P); the share of images whose nearest member is their own, and
the share closer to their own member than the audit's real-to-real duplicate threshold
(:func:`tckr.audit.duplicate_threshold` of H's distances to their nearest member). It is the measurement behind ``configs/mini-leaky.yaml``'s
``synthesis.init_strength``: with text-to-image synthesis the leaky LoRA's samples are not near their own members.

    python bench/own_member_distance.py runs/mini-leaky-t2i runs/mini-leaky-s0 --out bench/measured/own_member_distance.json
"""

from __future__ import annotations

import argparse

import numpy as np


def measure(run_dir: str) -> dict:
    from tckr.generation import synthesis
    from tckr.privacy import audit
    from tckr.runfolder import runs, synthetic

    run = runs.open_run(None, run_dir)
    D, H = run.real("D"), run.real("H")
    S = synthetic.load_synthetic(run, max(run.cfg.synthesis.cardinalities))
    own_index = synthesis.plan_sources(run)[np.asarray(S.index)]
    x, d, h = audit.pixels(S.images), audit.pixels(D.images), audit.pixels(H.images)
    (near_D, which_D), (near_H, _) = audit.nearest(x, d), audit.nearest(x, h)
    own = np.sqrt(((x - d[own_index]) ** 2).sum(1))
    dup = float(audit.duplicate_threshold(audit.nearest(h, d)[0]))
    return {"run": str(run.dir), "init_strength": float(run.cfg.synthesis.init_strength),
            "guidance_scale": float(run.cfg.synthesis.guidance_scale), "n_synthetic": int(len(x)), "n_D": int(len(d)),
            "median_own": float(np.median(own)), "median_nearest_D": float(np.median(near_D)),
            "median_nearest_H": float(np.median(near_H)), "dup_threshold": dup,
            "frac_nearest_member_is_own": float(np.mean(which_D == own_index)),
            "frac_own_below_dup": float(np.mean(own < dup))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders with a synthetic set (notebook 03 finished)")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    a = ap.parse_args(argv)
    rows = [measure(r) for r in a.runs]
    for r in rows:
        print(f"{r['run']}: init_strength {r['init_strength']:g}, {r['n_synthetic']} images; median distance to own member "
              f"{r['median_own']:.3f}, nearest member {r['median_nearest_D']:.3f}, nearest non-member {r['median_nearest_H']:.3f}; "
              f"nearest member is own {100 * r['frac_nearest_member_is_own']:.1f}%, own below duplicate threshold "
              f"({r['dup_threshold']:.3f}) {100 * r['frac_own_below_dup']:.1f}%")
    result = {"runs": rows}
    if a.out:
        from tckr.core import io
        from tckr.reporting import report

        parts = "; ".join(f"init_strength {r['init_strength']:g}: own member {r['median_own']:.3f} vs nearest non-member "
                          f"{r['median_nearest_H']:.3f}, nearest member is own {100 * r['frac_nearest_member_is_own']:.0f}%, "
                          f"near-copies {100 * r['frac_own_below_dup']:.0f}%" for r in rows)
        result["record"] = report.bench_record(argv=None if argv is None else [__file__, *argv],
                                               summary=f"median RMS pixel distance of a synthetic image to its prompt's own member: {parts}")
        io.write_json(a.out, result)
        print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
