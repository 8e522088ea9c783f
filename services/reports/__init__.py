"""Report analysis: figures and signals read from border reports (en, pl, lv, lt).

Plain Python over the ``regex`` module with per-language rule packs kept as
data (``packs/*.yaml``); no Faust, FastAPI or model weights.

    from services.reports import analyse
    analyse(text, country="LV", published_at=dt, language="lv").to_dict()
"""

from services.reports.analysis import EXTRACTOR, Analysis, analyse
from services.reports.extract import Figure
from services.reports.signals import Signal

__all__ = ["EXTRACTOR", "Analysis", "Figure", "Signal", "analyse"]
