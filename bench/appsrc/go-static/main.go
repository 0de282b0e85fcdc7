// A static Go HTTP server. `/` answers at once; `/deep` opens data files only when it is hit:
// /etc/mime.types (mime.TypeByExtension), /usr/share/zoneinfo (time.LoadLocation) and the
// system CA bundle (x509.SystemCertPool).
package main

import (
	"crypto/x509"
	"fmt"
	"log"
	"mime"
	"net/http"
	"time"
)

func deep(w http.ResponseWriter, r *http.Request) {
	// .svg is in Go's built-in table; .odt only comes from /etc/mime.types (media-types)
	fmt.Fprintf(w, "svg=%s\n", mime.TypeByExtension(".svg"))
	fmt.Fprintf(w, "odt=%s\n", mime.TypeByExtension(".odt"))
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		fmt.Fprintf(w, "tz=error %v\n", err)
	} else {
		t := time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC).In(loc)
		fmt.Fprintf(w, "tz=%s\n", t.Format("15:04 MST"))
	}
	pool, err := x509.SystemCertPool()
	switch {
	case err != nil:
		fmt.Fprintf(w, "certs=error %v\n", err)
	case len(pool.Subjects()) > 50: //nolint:staticcheck // Subjects is fine for counting
		fmt.Fprintf(w, "certs=ok\n")
	default:
		fmt.Fprintf(w, "certs=few %d\n", len(pool.Subjects()))
	}
}

func main() {
	http.HandleFunc("/deep", deep)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "go ok")
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:18103", nil))
}
