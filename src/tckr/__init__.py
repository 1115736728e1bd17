"""TCKR: Text-Conditioned Knowledge Recycling.

Phase modules: ``data`` (real datasets and splits), ``captions``, ``generator``,
``lora``, ``synthesis``, ``classifiers``/``train`` (teachers, students, GKD),
``mia`` and ``metrics`` (privacy), ``plots`` (figures from result files),
``study`` (the headless runner). ``config`` and ``runs`` hold settings and run folders.
"""

__version__ = "0.1.0"
