"""AI: model versions, inference jobs and their Celery tasks, the queue pages and badges.

``inference`` queues, claims, scores and stores (its jobs run in ``tasks``, in workers
only); ``actions`` registers and activates model versions and retries results;
``queries`` what a reader may see of a case's AI (heatmaps only as the evidence allows).
"""
