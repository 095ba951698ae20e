package policy

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reloads the policy set from dir whenever a file in it changes, until ctx ends. A set that does not
// compile is logged and the one in force stays; requests never see a half-loaded set.
func (e *Engine) Watch(ctx context.Context, dir string, log *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return err
	}
	go func() {
		defer w.Close()
		// Editors write a file in several steps; wait for a quiet moment before compiling.
		var settle <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-w.Events:
				if ev.Has(fsnotify.Write) || ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					settle = time.After(200 * time.Millisecond)
				}
			case err := <-w.Errors:
				log.Error("policy watch", "dir", dir, "error", err)
			case <-settle:
				settle = nil
				old := e.Revision()
				if err := e.Load(ctx, os.DirFS(dir)); err != nil {
					log.Error("policy reload refused; the previous policy set stays in force", "dir", dir, "revision", old, "error", err)
					continue
				}
				log.Info("policy reloaded", "dir", dir, "previous_revision", old, "revision", e.Revision())
			}
		}
	}()
	return nil
}
