"""The engine: the three-stage cascade, its candidate sources and kernels, and metadata filters.

``cascade`` (plan + stages), ``shortlist`` (FAISS), ``kernels`` (+ ``_kernels.c``: MaxSim and
Hamming MaxSim, with numpy references), ``filters`` (metadata filters -> SQL).
"""
