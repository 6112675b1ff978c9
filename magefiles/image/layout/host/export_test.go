package host

// WithoutTenderDeps switches off carrying the tender's interpreter and
// libraries until the returned func is called: what the image would be
// without the feature.
func WithoutTenderDeps() (restore func()) {
	bundleTenderDeps = false
	return func() { bundleTenderDeps = true }
}

// TenderLibDir is where the image keeps the tender's libraries.
const TenderLibDir = tenderLibDir
