# The Kubernetes API stand-in: replaced by its own file (kube_api.py).
