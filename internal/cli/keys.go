package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/siganteng/siganteng/internal/auth"
	"github.com/siganteng/siganteng/internal/config"
	"github.com/siganteng/siganteng/internal/routing"
)

const keysUsage = `Usage:
  siganteng keys create --name NAME [--admin] [--rps N] [--max-unfinished N]
                        [--daily-tokens N] [--daily-usd X] [--models a,b]
                        [--high-priority] [--max-sync N] [--max-waiting N]
                        [--share-weight N]
  siganteng keys list
  siganteng keys revoke KEY_ID

create prints the new key once; only its hash is stored. --rps and
--max-unfinished override RATE_LIMIT_RPS and MAX_UNFINISHED_PER_KEY for this
key. --daily-tokens and --daily-usd are budgets for each UTC day: once the
key's finished tasks have used one, its submissions get a 429 until the day
ends. --models limits the key to those models of ROUTES_FILE (capabilities
the file does not route are not limited). --share-weight weighs the key's
share of a deployment that is saturated against other keys' (a key of
weight 3 gets three times what a key of weight 1 gets while both wait).
Keys live in the Redis at REDIS_URL, shared by every API instance.
`

// keys runs the keys subcommands against REDIS_URL.
func keys(ctx context.Context, args []string, cfg config.Config, routes *routing.File, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("keys: want create, list or revoke\n\n%s", keysUsage)
	}
	if cfg.RedisURL == "" {
		return errors.New("keys: set REDIS_URL to the Redis the API uses; with the embedded Redis there are no keys, " +
			"and the API is open on a loopback address only")
	}
	rdb, _, _, err := dialRedis(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer rdb.Close()
	store := auth.NewStore(rdb)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	switch args[0] {
	case "create":
		fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		name := fs.String("name", "", "who or what the key is for")
		admin := fs.Bool("admin", false, "sees and cancels every task")
		rps := fs.Int("rps", 0, "requests per second; 0: RATE_LIMIT_RPS")
		maxUnfinished := fs.Int("max-unfinished", 0, "unfinished tasks at once; 0: MAX_UNFINISHED_PER_KEY")
		dailyTokens := fs.Int64("daily-tokens", 0, "input plus output tokens a UTC day; 0: no budget")
		dailyUSD := fs.Float64("daily-usd", 0, "estimated cost in US dollars a UTC day (prices from ROUTES_FILE); 0: no budget")
		models := fs.String("models", "", "comma-separated routed models (ROUTES_FILE names) the key may use; empty: all")
		high := fs.Bool("high-priority", false, "may submit priority high work, which goes before other keys' normal work")
		maxSync := fs.Int("max-sync", 0, "synchronous calls at once on one API process; 0: MAX_SYNC_PER_KEY")
		maxWaiting := fs.Int("max-waiting", 0, "event streams and Prefer: wait at once on one API process; 0: MAX_WAITING_PER_KEY")
		weight := fs.Int("share-weight", 1, "weight of the key's share of a saturated deployment's budget against other keys' (1 to 100)")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("keys create: %w\n\n%s", err, keysUsage)
		}
		if *name == "" || *rps < 0 || *maxUnfinished < 0 || *dailyTokens < 0 || *dailyUSD < 0 || *maxSync < 0 || *maxWaiting < 0 {
			return fmt.Errorf("keys create: --name is required, and limits are not negative\n\n%s", keysUsage)
		}
		if *weight < 1 || *weight > 100 {
			return fmt.Errorf("keys create: --share-weight must be 1 to 100, got %d", *weight)
		}
		allowed, err := modelList(*models, routes)
		if err != nil {
			return fmt.Errorf("keys create: %w", err)
		}
		raw, rec, err := store.Create(ctx, *name, auth.Settings{Admin: *admin, RequestsPerSecond: *rps, MaxUnfinished: *maxUnfinished,
			DailyTokens: *dailyTokens, DailyCostUSD: *dailyUSD, Models: allowed, HighPriority: *high,
			MaxSync: *maxSync, MaxWaiting: *maxWaiting, ShareWeight: *weight})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n\nThe key above is shown only now; store it as a secret.\nid: %s  name: %s  admin: %t\n", raw, rec.ID, rec.Name, rec.Admin)
		return err
	case "list":
		list, err := store.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tADMIN\tHIGH PRIORITY\tSHARE WEIGHT\tRPS\tMAX UNFINISHED\tDAILY TOKENS\tDAILY USD\tMODELS\tCREATED\tREVOKED")
		for _, k := range list {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.Format(time.RFC3339)
			}
			models := "all"
			if len(k.Models) > 0 {
				models = strings.Join(k.Models, ",")
			}
			fmt.Fprintf(tw, "%s\t%s\t%t\t%t\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Admin, k.HighPriority, max(k.ShareWeight, 1), orDefault(k.RequestsPerSecond), orDefault(k.MaxUnfinished),
				budget(k.DailyTokens), budget(k.DailyCostUSD), models, k.CreatedAt.Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	case "revoke":
		if len(args) != 2 {
			return fmt.Errorf("keys revoke: want one key id (see keys list)\n\n%s", keysUsage)
		}
		if err := store.Revoke(ctx, args[1]); err != nil {
			return fmt.Errorf("keys revoke %s: %w", args[1], err)
		}
		_, err := fmt.Fprintf(stdout, "revoked %s; API instances stop accepting it within %s\n", args[1], auth.CacheTTL)
		return err
	}
	return fmt.Errorf("keys: unknown subcommand %q\n\n%s", args[0], keysUsage)
}

// modelList reads --models, checking each name against ROUTES_FILE when
// one is set.
func modelList(raw string, routes *routing.File) ([]string, error) {
	var names []string
	for _, n := range strings.Split(raw, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if routes == nil {
		return names, nil
	}
	known := map[string]bool{}
	var all []string
	for _, m := range routes.Models {
		known[m.Name] = true
		all = append(all, m.Name)
	}
	for _, n := range names {
		if !known[n] {
			return nil, fmt.Errorf("--models: ROUTES_FILE names no model %q; it names: %s", n, strings.Join(all, ", "))
		}
	}
	return names, nil
}

func budget[N int64 | float64](n N) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprint(n)
}

func orDefault(n int) string {
	if n == 0 {
		return "default"
	}
	return fmt.Sprint(n)
}
