"""What an operator watches: health and readiness, Prometheus metrics, structured logs.

Nothing here is a clinical page: no login, no patient data, no ids or paths in answers.
"""
