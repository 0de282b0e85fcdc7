# A Sinatra app: `/` answers at once; `/report.csv` loads the csv library only when it is hit.
require 'sinatra/base'

class App < Sinatra::Base
  set :environment, :production

  get '/' do
    "sinatra ok\n"
  end

  get '/report.csv' do
    require 'csv' # lazily: nothing at start-up reads csv.rb
    content_type 'text/csv'
    CSV.generate do |csv|
      csv << %w[name count]
      csv << ['alpha', 3]
      csv << ['beta, with comma', 5]
    end
  end
end
