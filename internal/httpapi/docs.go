package httpapi

import (
	"net/http"

	"github.com/swaggest/swgui"
	"github.com/swaggest/swgui/v5emb"
)

// docsCSP lets the docs page load only what the binary serves: Swagger UI's
// own script, styles and icons, and the API's description. Its inline
// start-up script needs 'unsafe-inline'; no other host is named, so a
// browser fetches nothing from elsewhere.
const docsCSP = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// docs serves Swagger UI at /docs/ from assets embedded in the binary (the
// swgui module's build of swagger-ui-dist), reading /openapi.json: it works
// on a machine with no outside network, and no visitor's browser is sent
// to a third-party CDN.
func docs() http.Handler {
	ui := v5emb.NewWithConfig(swgui.Config{ShowTopBar: false, HideCurl: false})("SIGANTENG", "/openapi.json", "/docs/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", docsCSP)
		ui.ServeHTTP(w, r)
	})
}
