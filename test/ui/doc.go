// Package ui drives apigw's dashboard in a real headless Chromium (Debian's
// chromium package, through chromedp) against a real pipeline streaming the
// shipped CSV: the fleet lists every GPU, a GPU's charts have data points
// for every metric, filters and window changes update the URL and the view,
// and the dead-letter list shows a poison message the test injects. A test
// fails on any console error, uncaught exception or failed request.
// Screenshots go to .local/ui/. The tests carry the build tag ui so that
// `make test` stays fast; `make test-ui` runs them.
package ui
