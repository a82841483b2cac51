"""Upload a capsule video: stream it in chunks to storage's IngestVideo and show progress.

The storage service decodes, samples and de-duplicates the frames and publishes
them for scoring; the bar follows the bytes sent, then the frames decoded.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from lumenal.v1 import storage_pb2
from ui import session
from ui.client import ApiError, Client, ServiceDown, chunks
from ui.formatting import progress_fraction

VIDEO_TYPES = ["mp4", "avi", "mov", "mkv", "webm", "mpg", "mpeg"]


def ingest(c: Client, upload: UploadedFile, options: storage_pb2.IngestOptions,
           chunk_bytes: int) -> storage_pb2.IngestProgress | None:
    size = upload.size
    bar = st.progress(0.0, text=f"Uploading {upload.name}…")
    upload.seek(0)
    last = None
    for last in c.ingest_video(chunks(upload.read, chunk_bytes), options):
        frac, text = progress_fraction(last, size)
        bar.progress(frac, text=text)
    return last


def report(final: storage_pb2.IngestProgress | None) -> None:
    if final is None or not final.done:
        st.warning("The storage service ended the ingest without a final report; check the video list below.")
    elif final.already_ingested:
        st.info(f"This video was ingested before with the same options (`{final.video_id}`): nothing new stored.",
                icon=":material/content_copy:")
    else:
        st.success(f"Video `{final.video_id}` ingested: {final.frames_stored} frames stored, "
                   f"{final.frames_dropped_duplicate} near-duplicates dropped, "
                   f"{final.frames_unsampled} not sampled.", icon=":material/check_circle:")


def videos_table(c: Client) -> None:
    try:
        videos = c.list_videos()
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "Video list unavailable")
        return
    if not videos:
        st.caption("No videos ingested yet.")
        return
    st.dataframe(pd.DataFrame([{"video": v.video_id, "file": v.filename, "kind": v.kind,
                                "frames": v.frames_stored, "duplicates dropped": v.frames_dropped_duplicate,
                                "complete": v.complete} for v in videos]), hide_index=True)


def main() -> None:
    session.require("reviewer")
    s = session.settings()
    c = session.client()
    st.title("Upload a video")
    st.caption("Frames are sampled, near-duplicates dropped, and the rest join the pool to be scored and labeled.")
    upload = st.file_uploader("Capsule video", type=VIDEO_TYPES, max_upload_size=s.upload_max_mb,
                              key="video_upload")
    with st.expander("Ingest options"):
        fps = st.number_input("Sample frames per second (0 = service default, -1 = every frame)",
                              min_value=-1.0, value=0.0, step=0.5, key="sample_fps")
        dedup = st.number_input("Duplicate threshold (Hamming distance of perceptual hashes; "
                                "-1 = default, 0 = exact only, -2 = keep every frame)",
                                min_value=-2, value=-1, step=1, key="dedup")
        video_id = st.text_input("Video id (empty = derived from the content)", key="video_id")
    if st.button("Ingest", type="primary", icon=":material/upload:", disabled=upload is None, key="ingest"):
        options = storage_pb2.IngestOptions(video_id=video_id.strip(), filename=upload.name,
                                            sample_fps=float(fps), dedup_threshold=int(dedup))
        try:
            final = ingest(c, upload, options, s.upload_chunk_bytes)
        except (ApiError, ServiceDown) as exc:
            session.show_error(exc, f"Ingest of {upload.name} failed")
        else:
            report(final)
    st.subheader("Videos")
    videos_table(c)


main()
