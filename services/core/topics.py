"""Kafka topic names: the one place they are spelled."""

FRAMES_INGESTED = "frames.ingested"
FRAMES_SCORED = "frames.scored"
LABELS_SUBMITTED = "labels.submitted"
LABELS_RESOLVED = "labels.resolved"
MODELS_PUBLISHED = "models.published"
DEAD_LETTER = "lumenal.dlq"

ALL = (FRAMES_INGESTED, FRAMES_SCORED, LABELS_SUBMITTED, LABELS_RESOLVED, MODELS_PUBLISHED, DEAD_LETTER)

# Partitions bound consumer-group parallelism: the inference autoscaler's
# maximum replica count is tied to FRAMES_INGESTED's partition count.
PARTITIONS = {FRAMES_INGESTED: 6, FRAMES_SCORED: 3, LABELS_SUBMITTED: 3,
              LABELS_RESOLVED: 3, MODELS_PUBLISHED: 1, DEAD_LETTER: 1}
