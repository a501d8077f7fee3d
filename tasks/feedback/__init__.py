"""Preference data from what the enterprise already has: feedback logs, A/B tests, graded
reviews and corrections (``tasks.importers.feedback`` reads them into FeedbackSignal rows),
the pairs and KTO rows built from them (``pairs``), and the expert check of the weak ones
(``verify``). ``settings`` holds a project's thresholds."""
