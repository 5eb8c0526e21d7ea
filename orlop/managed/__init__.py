"""Orlop as a Docker *managed* plugin (`docker plugin install orlop/block`).

One plugin serves one driver kind. `kinds.py` says which kinds exist and which environment
variables configure each (derived from the backends' settings models and options);
`env.py` turns the plugin's environment into Orlop's configuration at start; `manifest.py`
writes the plugin's `config.json`. The root filesystem is built by `scripts/build-plugin`.
"""
