"""Running untrusted model source: static policy, backends, the worker."""
