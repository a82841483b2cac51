"""The labels service: annotators, leases, answers, consensus, agreement, exports."""
