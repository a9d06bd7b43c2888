"""Runnable example jobs: ``iterctl run jobs_examples.count:CountJob`` from the repo root."""
