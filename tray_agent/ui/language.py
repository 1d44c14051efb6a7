"""Installs the app's language in Qt: core.i18n's catalog, QLocale, and Qt's own widget strings."""

from __future__ import annotations

import logging
from typing import Final

from PySide6.QtCore import QCoreApplication, QLocale, QTranslator
from PySide6.QtGui import QGuiApplication

from tray_agent.core import i18n
from tray_agent.core.i18n import NP_

logger = logging.getLogger(__name__)

QT_MESSAGES: Final = (
    # Standard dialog buttons.
    NP_("QPlatformTheme", "OK"),
    NP_("QPlatformTheme", "Save"),
    NP_("QPlatformTheme", "Cancel"),
    NP_("QPlatformTheme", "Close"),
    NP_("QPlatformTheme", "Apply"),
    NP_("QPlatformTheme", "&Yes"),
    NP_("QPlatformTheme", "&No"),
    # The editing context menu of line edits and of the reply box.
    NP_("QLineEdit", "&Undo"),
    NP_("QLineEdit", "&Redo"),
    NP_("QLineEdit", "Cu&t"),
    NP_("QLineEdit", "&Copy"),
    NP_("QLineEdit", "&Paste"),
    NP_("QLineEdit", "Delete"),
    NP_("QLineEdit", "Select All"),
    NP_("QWidgetTextControl", "&Undo"),
    NP_("QWidgetTextControl", "&Redo"),
    NP_("QWidgetTextControl", "Cu&t"),
    NP_("QWidgetTextControl", "&Copy"),
    NP_("QWidgetTextControl", "Copy &Link Location"),
    NP_("QWidgetTextControl", "&Paste"),
    NP_("QWidgetTextControl", "Delete"),
    NP_("QWidgetTextControl", "Select All"),
)
"""Qt's own strings we show (context = Qt class), translated from our catalog: Qt ships no
Indonesian translation of qtbase."""

_QT_LOCALES: Final = {"en": "en_US", "id": "id_ID"}


class GettextTranslator(QTranslator):
    """Answers Qt's own ``tr()`` lookups (dialog buttons, edit menus) from core.i18n's catalog.

    Lookups use the Qt class name as the gettext context (``msgctxt "QLineEdit"``); anything not
    in the catalog keeps Qt's English text.
    """

    def translate(  # noqa: D102
        self, context: str, source_text: str, disambiguation: str | None = None, n: int = -1
    ) -> str:
        # WORKAROUND: an empty Python str reaches Qt as an empty (not null) QString, which Qt
        # takes as a translation; so "not translated" is answered with the source text itself.
        if not context or not source_text:
            return source_text
        return i18n.pgettext(context, source_text)

    def isEmpty(self) -> bool:  # noqa: D102, N802
        return False


def system_languages() -> list[str]:
    """The OS's preferred UI languages, best first (``["id-ID", "en-US"]``)."""
    return list(QLocale.system().uiLanguages())


def apply_language(setting: str, app: QCoreApplication | None = None) -> str:
    """Resolve and install the language everywhere: catalog, default QLocale, Qt's strings.

    Args:
        setting: ``ui.language`` (``"system"``, ``"en"``, ``"id"``).
        app: the application (default: the running instance).

    Returns:
        The installed language. Windows built after this call use it; the tray menu is rebuilt
        each time it opens, so it follows at once.
    """
    # Imported here: the first import of the Qt namespace costs PySide6 ~15 ms, and app.py
    # calls system_languages() before its first tray icon is up.
    from PySide6.QtCore import Qt

    lang = i18n.set_language(i18n.resolve_language(setting, system_languages()))
    QLocale.setDefault(QLocale(_QT_LOCALES.get(lang, _QT_LOCALES["en"])))
    app = app or QCoreApplication.instance()
    if app is not None:
        translator = app.findChild(GettextTranslator)
        if translator is None:
            translator = GettextTranslator(app)
            app.installTranslator(translator)
        if isinstance(app, QGuiApplication):
            app.setLayoutDirection(Qt.LayoutDirection.LeftToRight)  # both languages are LTR
    logger.info("Language: %s (setting %r)", lang, setting)
    return lang
