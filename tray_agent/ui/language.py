"""Installs the app's language in Qt: core.i18n's catalog, QLocale, and Qt's own widget strings.

Switching the language re-words every window already open, not only the ones built later:

* Qt's own strings (standard buttons, edit menus, the file dialog) follow through
  :class:`GettextTranslator`, re-installed so that Qt sends ``QEvent.LanguageChange``;
* our fixed texts (menus, buttons, labels, placeholders, tooltips, tab and window titles,
  combo items) are re-worded by :func:`retranslate_widgets` from the two catalogs;
* texts built with values (tab counts, the status bar, window titles with names) are rebuilt
  by their windows on ``LanguageChange`` or on :attr:`LanguageNotifier.language_changed`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import QCoreApplication, QEvent, QLocale, QObject, QTranslator, Signal
from PySide6.QtGui import QGuiApplication

if TYPE_CHECKING:
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QWidget

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
    NP_("QPlatformTheme", "Open"),
    NP_("QPlatformTheme", "Discard"),
    NP_("QPlatformTheme", "Help"),
    NP_("QPlatformTheme", "Retry"),
    NP_("QMessageBox", "Show Details..."),
    NP_("QMessageBox", "Hide Details..."),
    # The file dialog (Export diagnostics) where the platform has no native one.
    NP_("QFileDialog", "Save As"),
    NP_("QFileDialog", "&Save"),
    NP_("QFileDialog", "&Look in:"),
    NP_("QFileDialog", "File &name:"),
    NP_("QFileDialog", "Files of &type:"),
    NP_("QFileDialog", "Back"),
    NP_("QFileDialog", "Forward"),
    NP_("QFileDialog", "Parent Directory"),
    NP_("QFileDialog", "Create New Folder"),
    NP_("QFileDialog", "List View"),
    NP_("QFileDialog", "Detail View"),
    NP_("QFileDialog", "Go back"),
    NP_("QFileDialog", "Go forward"),
    NP_("QFileDialog", "Go to the parent directory"),
    NP_("QFileDialog", "Create a New Folder"),
    NP_("QFileDialog", "Change to list view mode"),
    NP_("QFileDialog", "Change to detail view mode"),
    NP_("QFileDialog", "New Folder"),
    NP_("QFileDialog", "&New Folder"),
    NP_("QFileDialog", "&Rename"),
    NP_("QFileDialog", "&Delete"),
    NP_("QFileDialog", "Show &hidden files"),
    NP_("QFileDialog", "Recent Places"),
    NP_("QFileDialog", "Sidebar"),
    NP_("QFileDialog", "List of places and bookmarks"),
    NP_("QFileDialog", "%1 already exists.\nDo you want to replace it?"),
    NP_("QFileSystemModel", "Name"),
    NP_("QFileSystemModel", "Size"),
    NP_("QFileSystemModel", "Type"),
    NP_("QFileSystemModel", "Kind"),
    NP_("QFileSystemModel", "Date Modified"),
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


class LanguageNotifier(QObject):
    """Says when the language was switched (one per application: :func:`language_notifier`).

    For objects that are not widgets (the tray's tooltip) or texts built with values.

    Signals:
        language_changed(str): the new language (``"en"``, ``"id"``), after windows were re-worded.
    """

    language_changed = Signal(str)


def language_notifier(app: QCoreApplication | None = None) -> LanguageNotifier | None:
    """The application's :class:`LanguageNotifier` (made on first use; None without an app)."""
    app = app or QCoreApplication.instance()
    if app is None:
        return None
    notifier = app.findChild(LanguageNotifier)
    if notifier is None:
        notifier = LanguageNotifier(app)
    return notifier


def retranslate_widgets(old: str, new: str, widgets: list[QWidget] | None = None) -> int:
    """Re-word the fixed texts of open widgets from language ``old`` to ``new``.

    Texts are looked up in :func:`tray_agent.core.i18n.retranslation_table`; anything else
    (names, messages, what the agent typed, texts built with values) is left alone. Line edit
    contents are never touched, only their placeholders.

    Args:
        old: the language the widgets show now.
        new: the language to show.
        widgets: the widgets (default: every widget of the application).

    Returns:
        How many texts changed.
    """
    # Imported here: app.py calls system_languages() before its first tray icon is up, and the
    # first import of the Qt namespace and the widgets costs PySide6 ~15 ms.
    from PySide6.QtCore import QModelIndex, Qt
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractItemView,
        QApplication,
        QComboBox,
        QGroupBox,
        QLabel,
        QLineEdit,
        QMenu,
        QTableView,
        QTabWidget,
    )

    table = i18n.retranslation_table(old, new)
    if not table:
        return 0
    changed = 0

    def reword(get: Callable[[], str], put: Callable[[str], None]) -> None:
        nonlocal changed
        text = get()
        after = table.get(text) if text else None
        if after is not None:
            put(after)
            changed += 1

    actions: dict[int, QAction] = {}
    for widget in widgets if widgets is not None else QApplication.allWidgets():
        reword(widget.windowTitle, widget.setWindowTitle)
        reword(widget.toolTip, widget.setToolTip)
        reword(widget.statusTip, widget.setStatusTip)
        reword(widget.accessibleName, widget.setAccessibleName)
        reword(widget.accessibleDescription, widget.setAccessibleDescription)
        if isinstance(widget, QAbstractButton | QLabel):
            reword(widget.text, widget.setText)
        if isinstance(widget, QLineEdit):
            reword(widget.placeholderText, widget.setPlaceholderText)
        elif isinstance(widget, QMenu | QGroupBox):
            reword(widget.title, widget.setTitle)
        elif isinstance(widget, QTabWidget):
            for i in range(widget.count()):
                reword(functools.partial(widget.tabText, i), functools.partial(widget.setTabText, i))
                reword(functools.partial(widget.tabToolTip, i), functools.partial(widget.setTabToolTip, i))
        elif isinstance(widget, QComboBox):
            for i in range(widget.count()):
                reword(functools.partial(widget.itemText, i), functools.partial(widget.setItemText, i))
        elif isinstance(widget, QAbstractItemView):
            widget.viewport().update()  # models answer in the new language when asked again
            header_model = widget.model()
            if isinstance(widget, QTableView) and header_model is not None:
                columns = header_model.columnCount(QModelIndex())
                if columns > 0:  # the column titles are asked again
                    header_model.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, columns - 1)
        for action in widget.actions():
            actions[id(action)] = action
    for action in actions.values():
        if action.menu() is None:  # a submenu's action follows its menu's title
            reword(action.text, action.setText)
            reword(action.iconText, action.setIconText)
        reword(action.toolTip, action.setToolTip)
        reword(action.statusTip, action.setStatusTip)
    return changed


def system_languages() -> list[str]:
    """The OS's preferred UI languages, best first (``["id-ID", "en-US"]``)."""
    return list(QLocale.system().uiLanguages())


def apply_language(setting: str, app: QCoreApplication | None = None) -> str:
    """Resolve and install the language everywhere: catalog, default QLocale, Qt's strings.

    Args:
        setting: ``ui.language`` (``"system"``, ``"en"``, ``"id"``).
        app: the application (default: the running instance).

    Returns:
        The installed language. Open windows are re-worded (see the module docstring), windows
        built later use it; the tray menu is rebuilt each time it opens.
    """
    # Imported here: the first import of the Qt namespace costs PySide6 ~15 ms, and app.py
    # calls system_languages() before its first tray icon is up.
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    old = i18n.language()
    lang = i18n.set_language(i18n.resolve_language(setting, system_languages()))
    QLocale.setDefault(QLocale(_QT_LOCALES.get(lang, _QT_LOCALES["en"])))
    app = app or QCoreApplication.instance()
    if app is not None:
        translator = app.findChild(GettextTranslator)
        if translator is None:
            translator = GettextTranslator(app)
            app.installTranslator(translator)
        elif lang != old:
            # Installing again makes Qt send LanguageChange to every widget: Qt's own strings
            # (standard buttons, the file dialog) re-translate, windows rebuild built texts.
            app.removeTranslator(translator)
            app.installTranslator(translator)
            # Qt posts the widgets' LanguageChange: deliver it now, so that every window is
            # re-worded when this returns (and before the fixed texts below).
            QCoreApplication.sendPostedEvents(None, int(QEvent.Type.LanguageChange))
        if isinstance(app, QGuiApplication):
            app.setLayoutDirection(Qt.LayoutDirection.LeftToRight)  # both languages are LTR
        if lang != old:
            if isinstance(app, QApplication):
                retranslate_widgets(old, lang)
            notifier = language_notifier(app)
            if notifier is not None:
                notifier.language_changed.emit(lang)
    logger.info("Language: %s (setting %r)", lang, setting)
    return lang
