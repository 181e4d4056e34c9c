"""Micro-benchmark of the goTemplate engine: microseconds per execution of typical fields.

Run from the repository root: ``python -m bench.gotemplate`` (prints a table; nothing is
asserted).
The generators benchmark renders ~10 fields x 10,000 Applications, so a field must cost
a few microseconds for the whole render to stay well under a second.
"""

from __future__ import annotations

import statistics
import time

from generators.gotemplate import Template, render

PARAMS = {
    "name": "prod-eu-1",
    "nameNormalized": "prod-eu-1",
    "server": "https://10.0.0.1:6443",
    "metadata": {"labels": {"env": "prod", "region": "eu"}, "annotations": {}},
    "path": {
        "path": "apps/guestbook",
        "basename": "guestbook",
        "basenameNormalized": "guestbook",
        "segments": ["apps", "guestbook"],
    },
    "values": {"replicas": 3.0},
}

FIELDS = {
    "plain text": "https://github.com/example/gitops.git",
    "two fields": "{{.name}}-{{.path.basename}}",
    "default pipe": '{{ .metadata.labels.env | default "dev" }}',
    "missing default": '{{ .metadata.labels.tier | default "web" }}',
    "if/else": '{{ if eq .metadata.labels.env "prod" }}main{{ else }}HEAD{{ end }}',
    "printf": '{{ printf "%s/%s" .path.path .name }}',
    "normalize": "{{ .path.basename | normalize }}",
    "range": "{{ range $i, $s := .path.segments }}{{ if $i }}/{{ end }}{{ $s }}{{ end }}",
    "toJson": "{{ .metadata.labels | toJson }}",
}


def per_call_us(fn: object, number: int) -> tuple[float, float]:
    """Median and best of 7 runs: on shared machines the best is the steadier figure."""
    runs = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()  # type: ignore[operator]
        runs.append((time.perf_counter() - t0) / number * 1e6)
    return statistics.median(runs), min(runs)


def main() -> None:
    n = 20_000
    print(
        f"{'field (us per call)':<20} {'execute med':>11} {'best':>6} "
        f"{'render() med':>12} {'best':>6} {'parse med':>9}"
    )
    for label, src in FIELDS.items():
        t = Template.parse(src, name=label)
        ex, ex_best = per_call_us(lambda t=t: t.execute(PARAMS), n)
        rd, rd_best = per_call_us(lambda src=src: render(src, PARAMS), n)
        parse, _ = per_call_us(lambda src=src: Template.parse(src), 2_000)
        print(f"{label:<20} {ex:>11.2f} {ex_best:>6.2f} {rd:>12.2f} {rd_best:>6.2f} {parse:>9.1f}")
    # the shape of the benchmark: 10,000 apps x 10 fields through render()
    apps = [dict(PARAMS, name=f"cluster-{i}") for i in range(10_000)]
    srcs = [*FIELDS.values(), "{{ .name }}"]
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for p in apps:
            for s in srcs:
                render(s, p)
        runs.append(time.perf_counter() - t0)
    print(f"10,000 apps x {len(srcs)} fields via render(): median {statistics.median(runs):.3f} s")


if __name__ == "__main__":
    main()
