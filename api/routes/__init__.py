"""Route modules, one per resource; :mod:`api.app` mounts them."""
