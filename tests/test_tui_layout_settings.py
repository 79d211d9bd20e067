"""The formats, the subtitle layout and the clean-up and skip switches on the settings
screen (issue 27): typed in, judged by Settings.validate, saved to the config file and
applied to the engine."""

from __future__ import annotations

from subq.engine import Settings, config_path, load_config
from subq.tui.app import SubqApp
from subq.tui.screens.main import MainScreen
from subq.tui.screens.picker import PickerScreen
from subq.tui.screens.settings import SettingsScreen
from test_tui import async_test, wait_until
from textual import events
from textual.widgets import Input, Select, Static


async def open_settings(pilot, app: SubqApp) -> SettingsScreen:
    await pilot.press("s")
    await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="settings")
    return app.screen


@async_test
async def test_layout_and_formats_are_validated_saved_and_applied(app_engine) -> None:
    engine = app_engine(Settings(keep_alive=-1), paused=True)
    app = SubqApp(engine)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_settings(pilot, app)
        error = screen.query_one("#settings-error", Static)
        assert screen.query_one("#formats", Input).value == "srt"
        assert screen.query_one("#max_line_width", Input).value == "42"
        assert screen.query_one("#max_cps", Input).value == "17"

        screen.query_one("#formats", Input).value = "srt,docx"
        await pilot.press("ctrl+s")
        assert "unknown format docx" in str(error.render())
        screen.query_one("#formats", Input).value = "srt,json,ass"
        screen.query_one("#max_line_width", Input).value = "wide"
        await pilot.press("ctrl+s")
        assert "line width: enter a whole number" in str(error.render())
        screen.query_one("#max_line_width", Input).value = "5"
        await pilot.press("ctrl+s")
        assert "--max-line-width" in str(error.render())  # Settings.validate's own words
        screen.query_one("#max_line_width", Input).value = "32"
        screen.query_one("#max_lines", Input).value = "1"
        screen.query_one("#max_cue_seconds", Input).value = "5.5"
        screen.query_one("#max_cps", Input).value = "20"
        screen.query_one("#karaoke", Select).value = True
        screen.query_one("#keep_junk", Select).value = True
        screen.query_one("#skip_subtitled", Select).value = True
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), what="saved")
        await wait_until(pilot, lambda: engine.settings.max_line_width == 32, what="applied")
    assert config_path().exists()
    saved = load_config()
    assert saved.formats == ("srt", "json", "ass") and saved.karaoke is True
    assert saved.keep_junk is True and saved.skip_subtitled is True  # the two switches
    assert (saved.max_line_width, saved.max_lines) == (32, 1)
    assert (saved.max_cue_seconds, saved.max_cps) == (5.5, 20.0)


@async_test
async def test_keys_typed_while_the_form_is_built_reach_the_model_field(app_engine) -> None:
    """As a fast typist (or tmux send-keys) does: `s` and the model's name in one go. The
    form takes a few tenths of a second to build; keys that came meanwhile were lost."""
    engine = app_engine(Settings(keep_alive=-1), paused=True)
    app = SubqApp(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        for key in "sbase":  # queued at once: none waits for the screen before it
            app.post_message(events.Key(key, key))
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="settings")
        model = app.screen.query_one("#model", Input)
        await wait_until(pilot, lambda: model.value == "base", what=f"base, not {model.value!r}")


@async_test
async def test_a_refused_value_is_said_where_an_80x24_screen_shows_it(app_engine) -> None:
    """The line under the form is below the fold at 80x24: a refused save also says why in
    a notification, and the form scrolls to the line."""
    engine = app_engine(Settings(keep_alive=-1), paused=True)
    app = SubqApp(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_settings(pilot, app)
        screen.query_one("#max_line_width", Input).value = "5"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert any("--max-line-width" in n.message for n in app._notifications)
        error = app.screen.query_one("#settings-error", Static)
        assert error.region.y < 24 and error.region.height > 0  # on screen, not below it
        assert isinstance(app.screen, SettingsScreen) and engine.settings.max_line_width == 42


@async_test
async def test_a_path_typed_straight_after_a_is_in_the_pickers_field(app_engine) -> None:
    engine = app_engine(Settings(keep_alive=-1), paused=True)
    app = SubqApp(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        for key in "a/tmp/x":
            app.post_message(events.Key(key, key))
        await wait_until(pilot, lambda: isinstance(app.screen, PickerScreen), what="picker")
        field = app.screen.query_one("#picker-input", Input)
        typed = f"/tmp/x, not {field.value!r}"
        await wait_until(pilot, lambda: field.value == "/tmp/x", what=typed)


@async_test
async def test_word_times_are_a_setting_on_the_form(app_engine) -> None:
    engine = app_engine(Settings(keep_alive=-1), paused=True)
    app = SubqApp(engine)
    async with app.run_test(size=(100, 40)) as pilot:
        words = (await open_settings(pilot, app)).query_one("#word_timestamps", Select)
        assert words.value is True
        words.value = False
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), what="saved")
        await wait_until(pilot, lambda: not engine.settings.word_timestamps, what="applied")
    assert load_config().word_timestamps is False
