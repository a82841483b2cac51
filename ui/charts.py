"""Altair charts for the pages: plain data in, a chart out (no Streamlit, no gRPC).

Kept separate so the shapes people look at (kappa heatmap, learning curve with
the serving version marked, uncertainty histogram) are built and tested in one
place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import altair as alt
import pandas as pd

ACCENT = "#0f766e"  # teal: Lumenal's colour throughout
SERVING = "#dc2626"


def probabilities(class_names: Sequence[str], probs: Sequence[float], top: int = 5) -> alt.Chart:
    """Horizontal bars of the model's top classes for one frame."""
    names = [class_names[i] if i < len(class_names) else f"class {i}" for i in range(len(probs))]
    df = pd.DataFrame({"class": names, "p": [float(p) for p in probs]}).nlargest(top, "p")
    return alt.Chart(df).mark_bar(color=ACCENT, cornerRadiusEnd=3).encode(
        x=alt.X("p:Q", title=None, scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", tickCount=5)),
        y=alt.Y("class:N", sort="-x", title=None),
        tooltip=["class", alt.Tooltip("p:Q", format=".3f")],
    ).properties(height=alt.Step(20))


def labels_over_time(rows: Iterable[tuple[str, str, int]], min_days: int = 7) -> alt.Chart:
    """Stacked bars: labels per day (UTC ``YYYY-MM-DD``), coloured by annotator.

    Days without labels are shown as gaps, over at least ``min_days`` days, so a
    young project is not one wide block."""
    df = pd.DataFrame(list(rows), columns=["day", "annotator", "labels"])
    if not df.empty:
        last = pd.to_datetime(df["day"]).max()
        first = min(pd.to_datetime(df["day"]).min(), last - pd.Timedelta(days=min_days - 1))
        missing = sorted(set(pd.date_range(first, last).strftime("%Y-%m-%d")) - set(df["day"]))
        df = pd.concat([df, pd.DataFrame({"day": missing, "annotator": df["annotator"].iloc[0], "labels": 0})])
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("day:O", title=None, sort="ascending", axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("sum(labels):Q", title="labels", axis=alt.Axis(format="d", tickMinStep=1)),
        color=alt.Color("annotator:N", scale=alt.Scale(scheme="tableau10"),
                        legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["day", "annotator", "labels"],
    ).properties(height=260)


def counts_bar(counts: Mapping[str, int], what: str, value: str = "labels") -> alt.Chart:
    """Horizontal bars of ``counts`` (labels per annotator, per class...)."""
    df = pd.DataFrame({what: list(counts), value: [int(v) for v in counts.values()]})
    return alt.Chart(df).mark_bar(color=ACCENT, cornerRadiusEnd=3).encode(
        x=alt.X(f"{value}:Q", title=value, axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y(f"{what}:N", sort="-x", title=None),
        tooltip=[what, value],
    ).properties(height=alt.Step(26))


def kappa_matrix(pairs: Iterable[tuple[str, str, float, int]]) -> pd.DataFrame:
    """Long-form symmetric matrix of Cohen's kappa (both triangles, diagonal = 1).

    An undefined kappa (NaN: both used one class throughout) stays NaN: an empty cell."""
    rows: list[dict[str, object]] = []
    names: set[str] = set()
    for a, b, kappa, n in pairs:
        names.update((a, b))
        rows += [{"a": a, "b": b, "kappa": kappa, "n": n}, {"a": b, "b": a, "kappa": kappa, "n": n}]
    rows += [{"a": x, "b": x, "kappa": 1.0, "n": None} for x in sorted(names)]
    return pd.DataFrame(rows, columns=["a", "b", "kappa", "n"])


def kappa_heatmap(pairs: Iterable[tuple[str, str, float, int]]) -> alt.Chart:
    """Cohen's kappa per annotator pair: red (chance or worse) to teal (perfect)."""
    df = kappa_matrix(pairs)
    base = alt.Chart(df).encode(x=alt.X("a:N", title=None, axis=alt.Axis(labelAngle=0)), y=alt.Y("b:N", title=None))
    cells = base.mark_rect().encode(
        color=alt.Color("kappa:Q", scale=alt.Scale(domain=[-0.2, 0.4, 1.0], range=["#dc2626", "#fde68a", ACCENT]),
                        legend=alt.Legend(title="κ")),
        tooltip=["a", "b", alt.Tooltip("kappa:Q", format=".2f"), "n"],
    )
    text = base.mark_text(fontSize=13).transform_filter("isValid(datum.kappa)").encode(
        text=alt.Text("kappa:Q", format=".2f"))
    size = 60 * max(2, df["a"].nunique())
    return (cells + text).properties(width=size, height=size)


def agreement_bars(items: Iterable[tuple[str, float, int]]) -> alt.Chart:
    """Each annotator's agreement with the consensus label (0..1)."""
    df = pd.DataFrame(list(items), columns=["annotator", "agreement", "n"])
    return alt.Chart(df).mark_bar(color=ACCENT, cornerRadiusEnd=3).encode(
        x=alt.X("agreement:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"),
                title="agreement with consensus"),
        y=alt.Y("annotator:N", sort="-x", title=None),
        tooltip=["annotator", alt.Tooltip("agreement:Q", format=".1%"), "n"],
    ).properties(height=alt.Step(26))


def learning_curve(points: Iterable[tuple[int, float, int, bool, str]], metric: str) -> alt.Chart:
    """``metric`` per model version; the serving version is a larger red point with a rule.

    ``points`` are (version, value, train_labels, serving, how it was published)."""
    df = pd.DataFrame(list(points), columns=["version", metric, "train_labels", "serving", "published"])
    df["status"] = df["serving"].map({True: "serving", False: "published"})
    base = alt.Chart(df).encode(x=alt.X("version:O", title="model version", axis=alt.Axis(labelAngle=0)))
    line = base.mark_line(color=ACCENT).encode(y=alt.Y(f"{metric}:Q", title=metric,
                                                       scale=alt.Scale(zero=False)))
    dots = base.mark_circle().encode(
        y=f"{metric}:Q",
        size=alt.condition("datum.serving", alt.value(260), alt.value(70)),
        color=alt.Color("status:N", scale=alt.Scale(domain=["published", "serving"], range=[ACCENT, SERVING]),
                        legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["version", alt.Tooltip(f"{metric}:Q", format=".4f"), "train_labels", "published", "status"],
    )
    rule = alt.Chart(df[df["serving"]]).mark_rule(color=SERVING, strokeDash=[4, 4]).encode(x="version:O")
    return (line + rule + dots).properties(height=280)


def histogram(edges: Sequence[float], counts: Sequence[int], metric: str) -> alt.Chart:
    """Pre-binned histogram (the inference service bins the whole pool)."""
    df = pd.DataFrame({"lo": list(edges[:-1]), "hi": list(edges[1:]), "frames": list(counts)})
    return alt.Chart(df).mark_bar(color=ACCENT, binSpacing=1).encode(
        x=alt.X("lo:Q", bin="binned", title=metric),
        x2="hi:Q",
        y=alt.Y("frames:Q", title="frames"),
        tooltip=[alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f"), "frames"],
    ).properties(height=260)


def votes_bar(votes: Mapping[str, int]) -> alt.Chart:
    """How the annotators voted on one frame."""
    return counts_bar(votes, "label", "votes")
