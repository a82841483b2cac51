"""Read-side views: stats, agreement, resolved labels for training, exports."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections import defaultdict
from itertools import combinations

import sqlalchemy as sa

from lumenal.core.errors import InvalidArgument
from lumenal.labels import models as m
from lumenal.labels.agreement import cohen_kappa, count_table, fleiss_kappa
from lumenal.labels.db import Database
from lumenal.v1 import labels_pb2

MAX_RESOLVED_PAGE = 10000


def _iso(seconds: float | None) -> str:
    return "" if seconds is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Reports:
    def __init__(self, db: Database, clock=time.time) -> None:  # noqa: ANN001
        self.db, self.clock = db, clock

    def stats(self) -> labels_pb2.LabelStats:
        count = sa.func.count()
        with self.db.read() as s:
            out = labels_pb2.LabelStats(
                submitted=s.scalar(sa.select(count).select_from(m.Label)) or 0,
                resolved=s.scalar(sa.select(count).select_from(m.Frame).where(m.Frame.status == "resolved")) or 0,
                pending_adjudication=s.scalar(sa.select(count).select_from(m.Frame)
                                              .where(m.Frame.status == "adjudication")) or 0,
                active_leases=s.scalar(sa.select(count).select_from(m.Lease)
                                       .where(m.Lease.state == "active", m.Lease.expires_at >= self.clock())) or 0,
                frames=s.scalar(sa.select(count).select_from(m.Frame)) or 0)
            for day, annotator, n in s.execute(sa.select(m.Label.day, m.Label.annotator, count)
                                               .group_by(m.Label.day, m.Label.annotator)
                                               .order_by(m.Label.day, m.Label.annotator)):
                out.per_day.append(labels_pb2.DailyCount(day=day, annotator=annotator, count=n))
            for annotator, n in s.execute(sa.select(m.Label.annotator, count).group_by(m.Label.annotator)):
                out.per_annotator[annotator] = n
            for label, n in s.execute(sa.select(m.Frame.resolved_label, count)
                                      .where(m.Frame.status == "resolved").group_by(m.Frame.resolved_label)):
                out.per_class[label] = n
            for kind, n in s.execute(sa.select(m.Label.kind, count).group_by(m.Label.kind)):
                out.per_kind[kind] = n
        return out

    def agreement(self) -> labels_pb2.Agreement:
        """Cohen per annotator pair, Fleiss over frames with 2+ class answers, agreement with the final label."""
        with self.db.read() as s:
            rows = s.execute(sa.select(m.Label.frame_id, m.Label.annotator, m.Label.label)
                             .where(m.Label.kind == "class")).all()
            final = dict(s.execute(sa.select(m.Frame.frame_id, m.Frame.resolved_label)
                                   .where(m.Frame.status == "resolved")).all())
        by_frame: dict[str, dict[str, str]] = defaultdict(dict)
        for frame_id, annotator, label in rows:
            by_frame[frame_id][annotator] = label
        out = labels_pb2.Agreement()
        annotators = sorted({a for answers in by_frame.values() for a in answers})
        for a, b in combinations(annotators, 2):
            pairs = [(v[a], v[b]) for v in by_frame.values() if a in v and b in v]
            if pairs:
                x, y = zip(*pairs, strict=True)
                out.cohen.append(labels_pb2.PairKappa(a=a, b=b, kappa=cohen_kappa(x, y), n=len(pairs)))
        multi = [list(v.values()) for v in by_frame.values() if len(v) >= 2]
        out.fleiss = fleiss_kappa(count_table(multi)) if multi else math.nan
        out.fleiss_items = len(multi)
        hits: dict[str, list[bool]] = defaultdict(list)
        for frame_id, answers in by_frame.items():
            if frame_id in final:
                for annotator, label in answers.items():
                    hits[annotator].append(label == final[frame_id])
        for annotator in sorted(hits):
            h = hits[annotator]
            out.with_consensus.append(labels_pb2.AnnotatorAgreement(
                annotator=annotator, agreement=sum(h) / len(h), n=len(h)))
        return out

    def list_resolved(self, after_sequence: int, limit: int) -> list[labels_pb2.ResolvedLabel]:
        limit = 1000 if limit <= 0 else min(limit, MAX_RESOLVED_PAGE)
        with self.db.read() as s:
            rows = s.execute(sa.select(m.Frame.frame_id, m.Frame.resolved_label, m.Frame.resolved_seq)
                             .where(m.Frame.status == "resolved", m.Frame.resolved_seq > after_sequence)
                             .order_by(m.Frame.resolved_seq).limit(limit)).all()
        return [labels_pb2.ResolvedLabel(frame_id=f, label=label, sequence=seq) for f, label, seq in rows]

    # -- exports ---------------------------------------------------------------
    def _resolved_frames(self) -> tuple[list[m.Frame], dict[str, list[dict]], list[str]]:
        with self.db.read() as s:
            frames = list(s.scalars(sa.select(m.Frame).where(m.Frame.status == "resolved")
                                    .order_by(m.Frame.resolved_seq)))
            answers: dict[str, list[dict]] = defaultdict(list)
            for frame_id, annotator, kind, label, at in s.execute(
                    sa.select(m.Label.frame_id, m.Label.annotator, m.Label.kind, m.Label.label,
                              m.Label.submitted_at)
                    .join(m.Frame, m.Frame.frame_id == m.Label.frame_id)
                    .where(m.Frame.status == "resolved").order_by(m.Label.submitted_at)):
                answers[frame_id].append({"annotator": annotator, "kind": kind, "label": label,
                                          "submitted_at": _iso(at)})
            classes = json.loads(s.scalar(sa.select(m.Project.class_names).where(m.Project.id == 1)))
        return frames, answers, classes

    @staticmethod
    def _row(f: m.Frame) -> dict:
        return {"frame_id": f.frame_id, "video_id": f.video_id, "frame_index": f.frame_index,
                "object_key": f.object_key, "label": f.resolved_label, "resolved_by": f.resolved_by,
                "votes": f.resolved_votes, "annotations": f.answers, "sequence": f.resolved_seq,
                "resolved_at": _iso(f.resolved_at), "ground_truth": f.ground_truth}

    def export(self, fmt: int) -> labels_pb2.ExportResponse:
        frames, answers, classes = self._resolved_frames()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        if fmt == labels_pb2.EXPORT_FORMAT_CSV:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(self._row(m.Frame(frame_id="")).keys()))
            writer.writeheader()
            writer.writerows(self._row(f) for f in frames)
            return labels_pb2.ExportResponse(data=buf.getvalue().encode(), content_type="text/csv",
                                             filename=f"lumenal-labels-{stamp}.csv")
        if fmt == labels_pb2.EXPORT_FORMAT_JSON:
            doc = {"class_names": classes, "exported_at": _iso(time.time()),
                   "labels": [{**self._row(f), "answers": answers.get(f.frame_id, [])} for f in frames]}
            return labels_pb2.ExportResponse(data=json.dumps(doc, indent=1).encode(),
                                             content_type="application/json",
                                             filename=f"lumenal-labels-{stamp}.json")
        if fmt == labels_pb2.EXPORT_FORMAT_COCO:
            return labels_pb2.ExportResponse(data=json.dumps(self._coco(frames, classes), indent=1).encode(),
                                             content_type="application/json",
                                             filename=f"lumenal-labels-{stamp}-coco.json")
        raise InvalidArgument("format must be EXPORT_FORMAT_CSV, EXPORT_FORMAT_JSON or EXPORT_FORMAT_COCO")

    @staticmethod
    def _coco(frames: list[m.Frame], classes: list[str]) -> dict:
        """COCO-style classification: one whole-image annotation (no bbox) per frame."""
        category = {c: i + 1 for i, c in enumerate(classes)}
        images, annotations = [], []
        for i, f in enumerate(frames, start=1):
            images.append({"id": i, "file_name": f.object_key, "width": f.width, "height": f.height,
                           "frame_id": f.frame_id, "video_id": f.video_id, "frame_index": f.frame_index})
            annotations.append({"id": i, "image_id": i, "category_id": category.get(f.resolved_label, 0),
                                "attributes": {"resolved_by": f.resolved_by, "votes": f.resolved_votes,
                                               "annotations": f.answers}})
        return {"info": {"description": "Lumenal frame labels (classification)",
                         "date_created": _iso(time.time()), "version": "1"},
                "licenses": [], "images": images, "annotations": annotations,
                "categories": [{"id": i, "name": c, "supercategory": "frame"} for c, i in category.items()]}
