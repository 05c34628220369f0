"""The rules: metrics, the closed/open division, submissions and their validation.

Everything here is pure Python over plain data and files: no torch import,
so a reviewer can check a submission on a laptop.
"""
