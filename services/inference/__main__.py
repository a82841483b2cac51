import os

# One BLAS thread per call: TopK requests already run in parallel on the gRPC pool,
# and multi-threaded OpenBLAS on a busy host made diversity selection 4x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from lumenal.inference import server  # noqa: E402

raise SystemExit(server.main())
