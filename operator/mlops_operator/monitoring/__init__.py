"""The monitor in every serving pod that has a reference profile (`mlops-operator monitor`).

v2.py reads V2 inference requests and responses into columns; window.py counts them into
the reference's bins over a rolling window; server.py is the proxy in front of the runtime
that feeds both and serves /metrics and /drift. No payload is stored or leaves the pod.
"""
